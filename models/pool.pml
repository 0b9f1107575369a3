/* Send-once rights left behind when a receive right moves back to the node
 * it came from (docs/protocol.md, "Route shortening", steps 1, 2 and 6), as
 * netmsg::translate implements them. Port P's receive right is on node A;
 * node B, where P was before, keeps a forwarder F, to which a task T holds
 * S send-once rights. A keeps a pool of S send-once rights on P, one for
 * each, so that what T sends through one (forwarded by B on stream E)
 * arrives on P through a send-once right. A moves P's receive right back to
 * B with an embargo: it lets go of what is left of its pool and says how
 * many that was; what T sent before and A takes in from E after the move
 * comes back to B on the port's new stream M, in B's lane. B either
 * shortens (F becomes the port: T's rights are the port's own; what comes
 * back meanwhile arrives through rights made on the staging port, at most
 * as many as A let go), or does not (refused at once, or given up later):
 * then it makes what A let go, less what came back already, as returning
 * rights, and T's later messages go the old way and come back through them.
 * Checked over every interleaving; the broken variants (spin -DBROKEN_...)
 * must fail, see check.sh. It asserts that every message T sends arrives on
 * P through a send-once right, each exactly once, and that no right is left
 * over on either node.
 */

#define S 4

mtype = { MOVED, BACK };

chan e = [S] of { byte };               /* B -> A: stream E (F's messages) */
chan m = [S + 1] of { mtype, byte };    /* A -> B: stream M */

byte rights = S;        /* T's send-once rights to F, unused */
byte sent = 0;          /* T's messages (through its rights) */
byte written = 0;       /* of them, B forwarded on E */
byte taken = 0;         /* of them, A took in from E before the move */
byte pool = S;          /* A's rights for F's messages */
bool moved = false;
byte let_go = 0;        /* A's pool at the move */
byte embargo = 0;       /* B: 0 none yet, 1 waiting, 2 shortened, 3 not */
byte need_back = 0;
byte back = 0;          /* T's messages back on M */
byte fresh = 0;         /* rights made on the staging port for them */
byte returning = 0;     /* B's returning rights */
byte parked = 0;        /* T's messages parked under the embargo */
byte arrived = 0;       /* on P, through a send-once right */

proctype T() {
end:
  do
  :: atomic { rights > 0 -> rights--; sent++;
       if
       :: embargo == 1 -> parked++
       :: embargo == 2 -> arrived++   /* the port's own right */
       :: else -> e!sent; written++
       fi }
  od
}

proctype A() {
  byte n;
end:
  do
  :: atomic { !moved && nempty(e) -> e?n; taken++;
       assert(pool > 0); pool--; arrived++ }
  :: atomic { !moved -> moved = true;
#ifdef BROKEN_KEEP_POOL
       let_go = 0;
#else
       let_go = pool; pool = 0;
#endif
       m!MOVED,taken }
     /* after the move, F's messages go back to B in its own lane */
  :: atomic { moved && nempty(e) -> e?n;
#ifdef BROKEN_KEEP_POOL
       if :: pool > 0 -> pool-- :: else fi;
#endif
       m!BACK,n }
  od
}

/* B's rights for what comes back, once it does not shorten. */
inline not_shortened() {
#ifndef BROKEN_NO_RETURNING
  returning = let_go - fresh;
#endif
  embargo = 3;
  /* what was parked goes the old way */
  do :: parked > 0 -> parked--; e!0; written++ :: parked == 0 -> break od
}

proctype B() {
  byte n, k;
end:
  do
  :: atomic { m?MOVED,k ->
       need_back = written - k;
       if
       :: embargo = 1     /* shortening, once everything is back */
       :: not_shortened() /* refused: a reason of its own */
       fi }
  :: atomic { m?BACK,n -> back++;
       if
       :: embargo == 1 ->
#ifdef BROKEN_NO_FRESH
          assert(returning > 0); returning--;
#else
          assert(fresh < let_go); fresh++;
#endif
          arrived++
       :: embargo == 3 -> assert(returning > 0); returning--; arrived++
       fi }
  :: atomic { embargo == 1 && back >= need_back ->
       embargo = 2; arrived = arrived + parked; parked = 0 }
  :: atomic { embargo == 1 -> not_shortened() }  /* given up */
  od
}

proctype Quiescence() {
  timeout ->
    assert(len(e) == 0 && len(m) == 0 && parked == 0);
    assert(rights == 0 && arrived == S);
    assert(pool == 0 && returning == 0)
}

init {
  atomic { run T(); run A(); run B(); run Quiescence() }
}
