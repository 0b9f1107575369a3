/* Route shortening with an embargo (docs/protocol.md, "Route shortening"),
 * as netmsg::translate implements it. Port P's receive right is on node A;
 * a task T on node B sends to P through B's proxy Q of A's export E (B's
 * netmsg forwards what T queues on Q on stream E; A puts it on P's queue).
 * A's receiver takes some messages, then sends P's receive right to B: A
 * writes MOVED on the port's new stream M with the embargo (how many of B's
 * messages on E it took in, and the queue it forwards right behind the
 * frame, in its own lane), the carrying message goes on another stream, and
 * B's messages still arriving on E are forwarded back on M in B's lane. The
 * lanes of M are held apart at B (a queued message may wait there for a
 * right it carries while the other lane goes on), so what comes back in
 * B's lane waits until A's queue is in. B
 * parks what T queues on Q meanwhile; once as many of its messages as it
 * wrote less those A took in are back, and A's queue too, Q becomes the
 * port: what came back, then what was parked, is its queue, and only then
 * does the carrying message give the receive right to B's receiver, under
 * Q's name. T's later messages go straight into the port.
 * P's queue holds QL messages: A's netmsg waits for room with a message
 * from E (it has taken it in) and reads no more of E meanwhile; when the
 * receive right leaves, such waiting senders are let in first, and counted
 * in the queue that goes behind MOVED.
 * Or B does not shorten (a new name for P, "Receive rights moving" step
 * 11): Q goes on forwarding T's messages on E, A relays them on M in B's
 * lane, and they still wait there for A's queue.
 * Checked over every interleaving; the broken variants (spin -DBROKEN_...)
 * must fail, see check.sh. It asserts that P's receivers get T's messages
 * in the order T sent them, all of them, and that nothing is left over.
 */

#define N 4
#define QL 2                            /* P's queue limit on A */

mtype = { MOVED, QUEUED };

chan qq = [N] of { byte };              /* Q's queue on B (the port's, after) */
chan e = [N] of { byte };               /* B -> A: stream E */
chan pa = [N] of { byte };              /* P's queue on A (QL let in) */
chan blocked = [N] of { byte };         /* A's netmsg's sends waiting for room */
chan m = [N + 1] of { mtype, byte, byte }; /* A -> B: stream M, A's lane */
chan mb = [N] of { byte };              /* A -> B: stream M, B's lane */
chan carry = [1] of { bit };            /* A -> B: the carrying message */
chan staged = [N] of { byte };          /* what came back, then what was parked */
chan parked = [N] of { byte };

byte sent = 0;          /* T's messages */
byte written = 0;       /* B's messages on E */
byte taken = 0;         /* B's messages A took in from E before the move */
bool moved = false;
bool embargo = false;
bool handed = false;    /* Q is the port */
bool moved_in = false;  /* MOVED handled at B */
bool new_name = false;  /* B did not shorten: P is a port of its own there */
bool claimed = false;   /* B's receiver has the receive right */
byte need_back = 0;     /* B's messages to come back on M */
byte need_queued = 0;   /* A's queue, on M after MOVED */
byte got_back = 0;
byte got_queued = 0;

/* B takes its lane of M once MOVED is in (the stream's first frame) and
 * A's queue has come behind it. */
#ifdef BROKEN_NO_QUEUE_WAIT
#define QUEUE_IN moved_in
#elif defined(BROKEN_QUEUE_WAIT_IF_SHORTENED)
/* the wait only under an embargo, as before step 11 */
#define QUEUE_IN (new_name || (moved_in && got_queued >= need_queued))
#else
#define QUEUE_IN (moved_in && got_queued >= need_queued)
#endif

byte last = 0;
byte received = 0;

inline receive_msg(n) {
  assert(n > last);     /* T's order */
  last = n;
  received++
}

proctype T() {
end:
  do
  :: atomic { sent < N -> sent++; qq!sent }
  od
}

/* A's netmsg and P's receiver on A, until the move; then the forwarder. */
proctype A() {
  byte n, q;
end:
  do
  :: atomic { !moved && nempty(e) && empty(blocked) -> e?n; taken++;
       if :: len(pa) < QL -> pa!n :: else -> blocked!n fi }
     /* the kernel lets a waiting sender in as room appears */
  :: atomic { !moved && nempty(pa) -> pa?n; receive_msg(n);
       if :: blocked?n -> pa!n :: empty(blocked) -> skip fi }
  :: atomic { !moved -> moved = true;
#ifndef BROKEN_LATE_BLOCKED
       do :: blocked?n -> pa!n :: empty(blocked) -> break od;
#endif
       q = len(pa);
#ifdef BROKEN_NO_QUEUED
       m!MOVED,taken,0;
#else
       m!MOVED,taken,q;
#endif
       /* the queue goes right behind the frame */
       do :: pa?n -> m!QUEUED,n,0 :: empty(pa) -> break od;
       carry!1 }
  :: atomic { moved && nempty(e) && empty(blocked) -> e?n; mb!n }
#ifdef BROKEN_LATE_BLOCKED
     /* let in only as the forwarder drains: behind the queue's end */
  :: atomic { moved && nempty(blocked) -> blocked?n; m!QUEUED,n,0 }
#endif
  od
}

/* B's netmsg and, once it holds the receive right, P's receiver on B. */
proctype B() {
  byte n, k, q;
end:
  do
     /* Q forwards, or parks under the embargo */
  :: atomic { !embargo && !handed && nempty(qq) -> qq?n; e!n; written++ }
  :: atomic { embargo && nempty(qq) -> qq?n;
#ifdef BROKEN_NO_PARK
       e!n; written++
#else
       parked!n
#endif
     }
  :: atomic { m?MOVED,k,q -> moved_in = true; need_queued = q;
       if
       :: embargo = true; need_back = written - k;
#ifdef BROKEN_NO_EMBARGO
          need_back = 0; need_queued = 0
#endif
       :: new_name = true
       fi
     }
     /* what comes on M: staged until the port is claimed, then the port's */
  :: atomic { m?QUEUED,n,k -> got_queued++;
       if :: claimed && handed -> qq!n :: claimed && new_name -> receive_msg(n)
          :: else -> staged!n fi }
     /* B's lane (see QUEUE_IN) */
  :: atomic { nempty(mb) && QUEUE_IN -> mb?n; got_back++;
       if :: claimed && handed -> qq!n :: claimed && new_name -> receive_msg(n)
          :: else -> staged!n fi }
     /* everything back: Q becomes the port */
  :: atomic { embargo && got_back >= need_back && got_queued >= need_queued ->
       do :: qq?n -> parked!n :: empty(qq) -> break od;
       do :: parked?n -> staged!n :: empty(parked) -> break od;
       embargo = false; handed = true }
#ifdef BROKEN_NO_CLAIM_WAIT
  :: atomic { moved && !claimed && nempty(carry) -> carry?1;
#else
  :: atomic { (handed || new_name) && !claimed && nempty(carry) -> carry?1;
#endif
       /* the staged messages go back in first */
       do :: staged?n -> receive_msg(n) :: empty(staged) -> break od;
       claimed = true }
  :: atomic { claimed && handed && nempty(qq) -> qq?n; receive_msg(n) }
  od
}

proctype Quiescence() {
  timeout ->
    assert(len(qq) == 0 && len(e) == 0 && len(pa) == 0 && len(m) == 0 && len(mb) == 0);
    assert(len(blocked) == 0);
    assert(len(carry) == 0 && len(staged) == 0 && len(parked) == 0);
    assert(received == N);
    assert(claimed && (handed || new_name))
}

init {
  atomic { run T(); run A(); run B(); run Quiescence() }
}
