/* A receive right moving between nodes by forwarding (docs/protocol.md,
 * "Receive rights moving"), as netmsg::translate implements it. Port P's
 * receive right is on node A; a task S on A holds a send right and one
 * send-once right to P. A's receiver may take some messages, then sends the
 * receive right to node B: A's netmsg writes MOVED first on the port's new
 * stream M (announcing the send-once rights left behind: B makes that many
 * for its pool), the carrying message goes to B on another stream, and P stays
 * on A as a forwarder: what is queued on it, and what S sends later, goes on
 * M in order. The forwarder is released (RELEASE on M) once S has no send
 * right left, its queue is drained and no send-once right to it remains.
 * Checked over every interleaving; the broken variants (spin -DBROKEN_...)
 * must fail, see check.sh. It asserts:
 *   - the carrying message takes a port that exists (it waits for MOVED);
 *   - S's messages reach P's receivers in the order S sent them;
 *   - a message sent through the send-once right arrives as through a
 *     send-once right, and the right ends exactly once (its message, or its
 *     send-once notification);
 *   - nothing is left over: when no step is possible every channel is empty,
 *     every message S sent was received, the forwarder is released and B's
 *     export and pool are gone.
 */

#define NMSG 3

#ifdef BROKEN_NO_DRAIN
#define DRAINED true
#else
#define DRAINED (len(pq) == 0)
#endif
#ifdef BROKEN_NO_SO_WAIT
#define NO_SEND_ONCE true
#else
#define NO_SEND_ONCE (so_queued == 0 && !s_once)
#endif
#ifdef BROKEN_NO_MOVED_WAIT
#define PORT_MADE true
#else
#define PORT_MADE port_b
#endif

mtype = { MOVED, MSG, ONCE, NOTIFY, RELEASE };

chan pq = [NMSG + 2] of { mtype, byte };  /* P's queue on A */
chan m = [NMSG + 4] of { mtype, byte };   /* A -> B: stream M */
chan carry = [1] of { bit };              /* A -> B: the carrying message */

bool s_send = true;        /* S holds its send right */
bool s_once = true;        /* S holds its send-once right */
byte s_sent = 0;
byte so_queued = 0;        /* send-once messages queued on P on A */

bool moved = false;        /* P's receive right left A */
bool released = false;     /* A released its forwarder */
byte announced = 0;        /* send-once rights MOVED announced */

bool port_b = false;       /* B made the port */
bool claimed = false;      /* B's task got the receive right */
byte pool = 0;
bool export_b = false;     /* B's export M to A */

byte last = 0;             /* the last of S's messages received */
byte received = 0;
byte once_used = 0;
byte once_notified = 0;
bool once_as_send = false;

inline receive_msg(n) {
  assert(n > last);        /* S's order */
  last = n;
  received++
}

proctype S() {
end:
  do
  :: atomic { s_send && s_sent < NMSG -> s_sent++; pq!MSG,s_sent }
  :: atomic { s_once -> s_once = false; so_queued++; pq!ONCE,0 }
     /* destroyed unused: the kernel's notification, through the right */
  :: atomic { s_once -> s_once = false; so_queued++; pq!NOTIFY,0 }
  :: atomic { s_send -> s_send = false }
  od
}

/* P's receiver on A, then its move to B, then A's netmsg with the
 * forwarder. */
proctype A() {
  mtype k;
  byte n;
end:
  do
  :: atomic { !moved && nempty(pq) -> pq?k,n;
       if
       :: k == MSG -> receive_msg(n)
       :: k == ONCE -> so_queued--; once_used++
       :: k == NOTIFY -> so_queued--; once_notified++
       fi }
  :: atomic { !moved -> moved = true;
       announced = so_queued + (s_once -> 1 : 0);
#ifdef BROKEN_NO_POOL
       announced = 0;
#endif
       m!MOVED,announced; carry!1 }
     /* the forwarder forwards what reaches P, in order */
  :: atomic { moved && !released && nempty(pq) -> pq?k,n;
       if
       :: k != MSG -> so_queued--
       :: else
       fi;
       m!k,n }
     /* its no-senders: released once drained and with no send-once right */
  :: atomic { moved && !released && !s_send && DRAINED && NO_SEND_ONCE ->
       released = true; m!RELEASE,0;
       /* the forwarder is destroyed: what is queued on it dies with it */
       do :: pq?k,n :: empty(pq) -> break od }
  od
}

proctype B() {
  mtype k;
  byte n;
end:
  do
  :: atomic { m?MOVED,n -> port_b = true; export_b = true; pool = n }
  :: atomic { m?MSG,n -> assert(port_b); receive_msg(n) }
  :: atomic { m?ONCE,n ->
       if
       :: pool > 0 -> pool--; once_used++
       :: else -> once_as_send = true; once_used++
       fi }
  :: atomic { m?NOTIFY,n ->
       if
       :: pool > 0 -> pool--
       :: else
       fi;
       once_notified++ }
     /* the export ends: what is left of the pool is destroyed (each would
      * notify the port) */
  :: atomic { m?RELEASE,n -> export_b = false; once_notified = once_notified + pool; pool = 0 }
  :: atomic { PORT_MADE && nempty(carry) -> carry?1; assert(port_b); claimed = true }
  od
}

proctype Quiescence() {
  timeout ->
    assert(len(pq) == 0 && len(m) == 0 && len(carry) == 0);
    assert(received == s_sent);
    assert(!once_as_send);
    assert(s_once || once_used + once_notified == 1);
    assert(!moved || (claimed && (s_send || (released && !export_b && pool == 0))))
}

init {
  atomic { run S(); run A(); run B(); run Quiescence() }
}
