/* Causal order through a forwarding node (docs/protocol.md, "Causal order"
 * and "Forwarding"), as netmsg::translate implements it, on three nodes. A is
 * the home of port P. B holds a proxy for P and exports it on to C, so B
 * forwards C's messages to A directly, in C's own lane of B's stream to A
 * (marked with their origin), next to B's own messages to P. C then gets a
 * right to P straight from A and maps its right onto that direct import: its
 * next messages go C -> A and carry a dependency, the position in C's lane
 * of B's stream up to which C had written to B. A holds each such message
 * until that lane has delivered so far, or has ended: when the link B-C is
 * cut, B writes LANE_END on its stream to A (what was on the way is lost).
 * Checked over every interleaving; the broken variants (spin -DBROKEN_...)
 * must fail, see check.sh. It asserts:
 *   - A delivers C's messages in the order C sent them (per-sender FIFO
 *     across the change of path), whatever was lost with the cut;
 *   - nothing waits forever: when no step is possible every channel is
 *     empty, and every message C sent was delivered or lost with the cut.
 */

#define NVIA    3   /* C's messages through B */
#define NDIRECT 2   /* C's messages on its direct import */
#define NOWN    2   /* B's own messages to P */

mtype = { MSG, LANE_END };

chan cb = [NVIA] of { byte };                    /* C -> B: C's sequence number */
chan ba = [NVIA + NOWN + 1] of { mtype, byte, byte }; /* B -> A: kind, lane (0 B's own, 1 C's), seq */
chan ca = [NDIRECT] of { byte, byte };           /* C -> A: seq, position in C's lane at A */

bool may_lose;
bool cut = false;           /* the link B-C is gone */
byte c_sent = 0;            /* C's sequence numbers so far */
byte c_via_written = 0;     /* C's messages written to B */
bool c_direct = false;      /* C has mapped its right onto the direct import */
byte b_own = 0;
byte lost = 0;              /* C's messages lost with the cut */

byte a_lane_c = 0;          /* A: C's lane of B's stream, delivered */
byte a_lane_b = 0;          /* A: B's own lane, delivered */
bool a_lane_c_ended = false;
byte a_last_c = 0;          /* A: the last of C's messages delivered */
byte a_c_delivered = 0;

/* The positions of the direct messages in ca, in order (a guard cannot read
 * a channel's head): C writes dpos[dw], A reads dpos[dr]. */
byte dpos[NDIRECT];
byte dw = 0;
byte dr = 0;

inline deliver_c(n) {
  assert(n > a_last_c);     /* C's messages in the order sent */
  a_last_c = n;
  a_c_delivered++
}

proctype C() {
end:
  do
  :: atomic { (!c_direct && !cut && c_sent < NVIA) ->
       c_sent++; c_via_written++; cb!c_sent }
  :: atomic { !c_direct -> c_direct = true }
  :: atomic { (c_direct && dw < NDIRECT) -> c_sent++;
#ifdef BROKEN_NO_POSITION
       dpos[dw] = 0;
#else
       dpos[dw] = c_via_written;
#endif
       ca!c_sent,dpos[dw]; dw++
     }
  od
}

proctype B() {
  byte n;
end:
  do
  :: atomic { cb?n -> ba!MSG,1,n }     /* forwarded in C's lane */
  :: atomic { b_own < NOWN -> b_own++; ba!MSG,0,0 }
  :: atomic { (may_lose && !cut) -> cut = true;
       /* what C had on its way to B is lost */
       do :: cb?n -> lost++ :: empty(cb) -> break od;
#ifndef BROKEN_NO_LANE_END
       ba!LANE_END,1,0
#endif
     }
  od
}

proctype A() {
  byte l, n, p;
end:
  do
  :: atomic { ba?MSG,l,n ->
       if
       :: l == 1 -> a_lane_c++; deliver_c(n)
       :: else -> a_lane_b++
       fi }
  :: atomic { ba?LANE_END,l,n -> a_lane_c_ended = true }
  :: atomic {
#ifdef BROKEN_MERGED_LANES
       /* positions counted over the whole stream, B's own messages too */
       (dr < dw && (a_lane_c + a_lane_b >= dpos[dr] || a_lane_c_ended)) ->
#else
       (dr < dw && (a_lane_c >= dpos[dr] || a_lane_c_ended)) ->
#endif
       ca?n,p; assert(p == dpos[dr]); dr++; deliver_c(n) }
  od
}

proctype Quiescence() {
  timeout ->
    assert(len(ca) == 0 && len(ba) == 0 && len(cb) == 0);
    assert(a_c_delivered + lost == c_sent)
}

init {
  atomic {
    if :: may_lose = true :: may_lose = false fi;
    run A(); run B(); run C(); run Quiescence()
  }
}
