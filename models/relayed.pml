/* Route shortening through a third node with flush markers (docs/protocol.md,
 * "Route shortening (embargo)", step 7), as netmsg::translate implements it.
 * Port P's receive right is on node A. Node B's name for P is its proxy Q,
 * an import from node T, whose own proxy of P leads to A: what B's task
 * queues on Q goes B -> T -> A, in B's own lane. B also forwards through Q
 * the messages of another node X (X's lane). A's receiver takes some
 * messages, then sends P's receive right to B: A writes MOVED on the new
 * stream M (counting only its queue, which it forwards right behind the
 * frame), and what reaches A from T after that goes back on M in its lane.
 * B parks what its task queues on Q and writes a marker in each lane it
 * wrote to T (X's only if it forwarded some of X's messages); what X sends
 * meanwhile still goes the old way, behind X's marker, and is counted from
 * where that marker comes back. Once every marker is back, and A's queue,
 * Q becomes the port: what came back, then what was parked, is its queue;
 * only then does the carrying message give B's receiver the receive right.
 * Checked over every interleaving; the broken variants (spin -DBROKEN_...)
 * must fail, see check.sh. It asserts that P's receivers get each lane's
 * messages in the order sent, all of them, and that nothing is left over.
 */

#define N 3                             /* B's task's messages */
#define NX 3                            /* X's messages */
#define OWN 0
#define XL 1

mtype = { MOVED, QUEUED, BACK };

chan qq = [N] of { byte };              /* Q's queue on B (the port's, after) */
chan xq = [NX] of { byte };             /* X's messages reaching B */
chan bt = [N + NX + 2] of { bit, byte, bit };   /* B -> T: lane, n, marker */
chan ta = [N + NX + 2] of { bit, byte, bit };   /* T -> A */
chan pa = [N + NX] of { bit, byte };    /* P's queue on A */
chan m = [N + NX + 3] of { mtype, bit, byte, bit }; /* A -> B: stream M */
chan carry = [1] of { bit };            /* A -> B: the carrying message */
chan staged = [N + NX] of { bit, byte };
chan parked = [N] of { byte };

byte sent = 0;
byte xsent = 0;
bool xforwarded = false;    /* B forwarded X's messages to T before the move */
bool moved = false;
bool embargo = false;
bool handed = false;
bool claimed = false;
byte markers = 0;           /* markers on their way */
bool xmarked = false;       /* X's marker is one of them */
byte xbehind = 0;           /* X's messages forwarded behind its marker */
bool xwait = false;         /* the hand-over waits for X's lane on M */
byte need_x = 0;            /* to reach this */
byte got_x = 0;             /* X's lane on M so far (markers counted) */
byte need_queued = 0;
byte got_queued = 0;

byte last[2];
byte received = 0;

inline receive_msg(l, n) {
  assert(n > last[l]);      /* each lane's order */
  last[l] = n;
  received++
}

proctype Task() {
end:
  do
  :: atomic { sent < N -> sent++; qq!sent }
  od
}

proctype X() {
end:
  do
  :: atomic { xsent < NX -> xsent++; xq!xsent }
  od
}

/* T's netmsg forwards in lane order. */
proctype T() {
  bit l, k;
  byte n;
end:
  do
  :: atomic { bt?l,n,k -> ta!l,n,k }
  od
}

/* A's netmsg and P's receiver on A, until the move; then the forwarder. */
proctype A() {
  bit l, k;
  byte n;
end:
  do
  :: atomic { !moved && nempty(ta) -> ta?l,n,k; assert(k == 0); pa!l,n }
  :: atomic { !moved && nempty(pa) -> pa?l,n; receive_msg(l, n) }
  :: atomic { !moved -> moved = true;
       m!MOVED,0,len(pa),0;
       do :: pa?l,n -> m!QUEUED,l,n,0 :: empty(pa) -> break od;
       carry!1 }
  :: atomic { moved && nempty(ta) -> ta?l,n,k; m!BACK,l,n,k }
  od
}

/* B's netmsg and, once it holds the receive right, P's receiver on B. */
proctype B() {
  bit l, k;
  byte n, q;
end:
  do
     /* Q forwards B's task's messages, or parks them under the embargo */
  :: atomic { !embargo && !handed && nempty(qq) -> qq?n; bt!OWN,n,0 }
  :: atomic { embargo && nempty(qq) -> qq?n; parked!n }
     /* X's messages go the old way until Q is the port */
  :: atomic { !handed && nempty(xq) -> xq?n; bt!XL,n,0;
       if :: !embargo -> xforwarded = true
          :: embargo && xmarked -> xbehind++
          :: embargo && !xmarked && xwait -> need_x++
          :: embargo && !xmarked && !xwait -> need_x = got_x + 1; xwait = true
       fi }
  :: atomic { handed && nempty(xq) -> xq?n;
       if :: claimed -> receive_msg(XL, n) :: else -> staged!XL,n fi }
  :: atomic { m?MOVED,l,q,k -> embargo = true; need_queued = q;
#ifndef BROKEN_NO_MARKER
       bt!OWN,0,1; markers++;
       if :: xforwarded -> bt!XL,0,1; markers++; xmarked = true
          :: else -> skip
       fi
#endif
     }
  :: atomic { m?QUEUED,l,n,k -> got_queued++; staged!l,n }
  :: atomic { m?BACK,l,n,k ->
       if :: l == XL -> got_x++ :: else -> skip fi;
       if :: k == 1 ->
            if :: embargo ->
#ifndef BROKEN_NO_BEHIND
                 if :: l == XL && xbehind > 0 -> need_x = got_x + xbehind; xwait = true
                    :: else -> skip
                 fi;
#endif
                 if :: l == XL -> xmarked = false :: else -> skip fi;
                 markers--
               :: else -> skip
            fi
          :: else ->
            if :: claimed -> receive_msg(l, n) :: else -> staged!l,n fi
       fi }
     /* everything back: Q becomes the port */
  :: atomic { embargo && markers == 0 && got_queued >= need_queued && got_x >= need_x ->
       do :: qq?n -> parked!n :: empty(qq) -> break od;
       do :: parked?n -> staged!OWN,n :: empty(parked) -> break od;
       embargo = false; handed = true }
  :: atomic { handed && !claimed && nempty(carry) -> carry?1;
       do :: staged?l,n -> receive_msg(l, n) :: empty(staged) -> break od;
       claimed = true }
  :: atomic { claimed && nempty(qq) -> qq?n; receive_msg(OWN, n) }
  od
}

proctype Quiescence() {
  timeout ->
    assert(len(qq) == 0 && len(xq) == 0 && len(bt) == 0 && len(ta) == 0);
    assert(len(pa) == 0 && len(m) == 0 && len(carry) == 0);
    assert(len(staged) == 0 && len(parked) == 0);
    assert(received == N + NX);
    assert(claimed && handed && markers == 0)
}

init {
  atomic { run Task(); run X(); run T(); run A(); run B(); run Quiescence() }
}
