/* netmsg's release protocol for one link (docs/protocol.md, "Counted release"),
 * as netmsg::release::Ledger implements it. Node A is the home of port P; B
 * imports it. Checked over every interleaving of:
 *   - send rights to P travelling A -> B in messages on other streams (carrier);
 *   - B's tasks sending to P, dropping rights, late no-senders notifications;
 *   - B's tasks sending rights to P back home to A in messages on other
 *     streams (B's netmsg keeps a reference until A says HOMEARRIVED), each
 *     with its watermark: A holds the carrying message until it has handled
 *     that many of B's messages on P's stream (causal order: a task at A that
 *     gets the right and sends to P comes after everything B sent before);
 *   - send-once rights to P exported one-shot, each used, destroyed unused,
 *     sent back home to A in a message on another stream (B's netmsg destroys
 *     the proxy, whose right then goes without a notification, and A gives
 *     the right it holds), or overtaken by P's death, with each one-shot
 *     export on its own streams;
 *   - P dying at any moment;
 *   - the link being lost at any moment (everything in flight on it is gone).
 * Broken variants (spin -DBROKEN_...) must fail; see check.sh.
 */

#define MAXSEND 2   /* send rights A may send B */
#define MAXMSG  2   /* messages B's tasks may send P */
#define MAXONCE 2   /* send-once rights A may send B */
#define MAXHOME 1   /* rights B's tasks may send home */

mtype = { RIGHT, ONCE, MSG, REL, DEAD, ACK, OMSG, SOD, HOME, HOMEARRIVED, OHOME };

chan carrier = [MAXSEND + MAXONCE] of { mtype, byte };   /* A -> B, rights in messages */
chan s = [MAXMSG + MAXSEND + 2] of { mtype, byte };      /* B -> A on P's send export stream */
chan r = [MAXSEND + MAXHOME + 2] of { mtype, byte };     /* A -> B on that stream */
chan back = [MAXHOME] of { mtype, byte };                /* B -> A, rights going home in messages, with their watermark */
chan nsq = [MAXSEND + 2] of { byte, byte };              /* B's kernel -> B's netmsg: no-senders(gen, mscount) */
chan so[MAXONCE] = [2] of { mtype };                     /* B -> A, one stream per one-shot export */
chan ro[MAXONCE] = [1] of { mtype };                     /* A -> B on those */
chan oback = [MAXONCE] of { mtype, byte };               /* B -> A, send-once rights going home in messages */

bool may_lose;              /* chosen both ways at start, so that runs without loss reach quiescence too */
bool lost = false;          /* the link is gone; a new link starts a new ledger */
byte lost_msgs = 0;         /* B's messages on the link when it went */

/* node A */
bool p_alive = true;
bool export_live = false;
byte sent = 0;
byte a_sends_left = MAXSEND;
byte delivered = 0;
byte destroyed = 0;
byte rights_in_flight = 0;  /* send rights on the carrier */
byte once_in_flight = 0;
byte once_next = 0;
bool ox_live[MAXONCE];      /* one-shot export exists (netmsg holds the send-once right) */
bool ox_dead[MAXONCE];      /* ... and P died under it */
byte o_settled[MAXONCE];    /* ghost: times the send-once right was consumed */

/* node B */
bool import_live = false;
bool proxy_dead = false;    /* tombstone */
byte received = 0;
byte b_rights = 0;
byte b_msgs_left = MAXMSG;
byte b_sent = 0;
byte msgs_in_s = 0;
byte b_gen = 0;
byte b_mscount = 0;
bool b_saw_dead = false;
bool oproxy[MAXONCE];       /* a one-shot proxy whose single right a task holds */
byte b_home_left = MAXHOME;
byte kept = 0;              /* references B's netmsg keeps for rights gone home */
byte home_in_flight = 0;
byte home_alive = 0;        /* rights that came home as the live port */
byte home_mark = 0;         /* the watermark of the right going home (MAXHOME is 1) */

inline settle(i) {
  o_settled[i]++;
  assert(o_settled[i] == 1)   /* a send-once right is consumed exactly once */
}

inline flush2(c) {
  do :: c?_,_ :: empty(c) -> break od
}

proctype NodeA() {
  byte n, i;
end:
  do
  :: atomic { (!lost && p_alive && a_sends_left > 0) ->
       a_sends_left--; export_live = true; sent++; rights_in_flight++; carrier!RIGHT,0 }
  :: atomic { (!lost && p_alive && once_next < MAXONCE) ->
       ox_live[once_next] = true; once_in_flight++; carrier!ONCE,once_next; once_next++ }
  :: atomic {
#ifdef BROKEN_NO_WATERMARK
       nempty(back) ->
#else
       (nempty(back) && delivered + destroyed >= home_mark) ->
#endif
       back?HOME,n;   /* a right to P came home: deliver the original port */
       assert(n == home_mark);
       /* causal order: B's messages sent before the right left are handled */
       assert(delivered + destroyed >= n);
       home_in_flight--;
       if
       :: export_live -> r!HOMEARRIVED,1; if :: p_alive -> home_alive++ :: else -> skip fi
       :: else -> assert(!p_alive)   /* a live port's right never comes home dead */
       fi }
  :: atomic { s?MSG,_ -> msgs_in_s--;
       if :: p_alive -> delivered++ :: else -> destroyed++ fi }
  :: atomic { s?REL,n ->
#ifdef BROKEN_FLAG_RELEASE
       n = sent;                 /* any release frees the export */
#endif
       assert(sent >= n);
       sent = sent - n;
       if
       :: sent == 0 ->
            assert(rights_in_flight == 0);
            assert(!p_alive || home_in_flight == 0);
            assert(!import_live || proxy_dead);
            assert(msgs_in_s == 0);
            export_live = false;
            r!ACK,0
       :: else -> r!ACK,sent
       fi }
  :: atomic { p_alive -> p_alive = false;
       if :: (export_live && !lost) -> r!DEAD,0 :: else -> skip fi;
       for (i : 0 .. MAXONCE - 1) {
         if
         :: (ox_live[i] && !ox_dead[i]) ->
              ox_dead[i] = true; settle(i);   /* the held right is a dead name now */
              if :: !lost -> ro[i]!DEAD :: else -> skip fi
         :: else -> skip
         fi
       } }
  :: atomic { (may_lose && !lost) -> lost = true;
       /* A frees every export; held send-once rights are destroyed, so their
        * receivers get send-once notifications. */
       for (i : 0 .. MAXONCE - 1) {
#ifndef BROKEN_LOSS_KEEPS_ONCE
         if :: (ox_live[i] && !ox_dead[i]) -> settle(i) :: else -> skip fi;
#endif
         ox_live[i] = false; ox_dead[i] = false;
         oproxy[i] = false;
         do :: so[i]?_ :: empty(so[i]) -> break od;
         do :: oback?_,_ :: empty(oback) -> break od;
         do :: ro[i]?_ :: empty(ro[i]) -> break od
       }
       export_live = false; sent = 0;
       /* B's proxies become dead names. */
       import_live = false; proxy_dead = false; b_rights = 0; received = 0;
       lost_msgs = msgs_in_s; msgs_in_s = 0; rights_in_flight = 0; once_in_flight = 0;
       kept = 0; home_in_flight = 0; do :: back?_,_ :: empty(back) -> break od;
       flush2(carrier); flush2(s); flush2(r) }
  od
}

inline release() {
  s!REL,received; received = 0; import_live = false; proxy_dead = false
}

proctype NodeB() {
  byte n, m;
end:
  do
  :: atomic { carrier?RIGHT,_ -> rights_in_flight--;
       if :: !import_live -> import_live = true; received = 0; b_gen++; b_mscount = 0 :: else -> skip fi;
       received++;
       if
       :: proxy_dead -> s!REL,received; received = 0
       :: else -> assert(!b_saw_dead); b_rights++; b_mscount++
       fi }
  :: atomic { carrier?ONCE,n -> once_in_flight--;
       assert(!oproxy[n]);
       oproxy[n] = true }
  :: atomic { (!lost && b_rights > 0 && !proxy_dead && b_msgs_left > 0) ->
       b_msgs_left--; b_sent++; msgs_in_s++; s!MSG,0 }
  :: atomic { (!lost && b_rights > 0 && !proxy_dead && b_home_left > 0) ->
       b_home_left--; b_rights--; home_in_flight++; home_mark = b_sent; back!HOME,b_sent;
#ifdef BROKEN_HOME_DROPS_AT_ONCE
       if :: (b_rights == 0 && import_live) -> nsq!b_gen,b_mscount :: else -> skip fi
#else
       kept++
#endif
     }
  :: atomic { (b_rights > 0) -> b_rights--;
       if :: (b_rights == 0 && kept == 0 && import_live && !proxy_dead) -> nsq!b_gen,b_mscount :: else -> skip fi }
  :: atomic { r?HOMEARRIVED,n ->
       if
       :: (import_live && !proxy_dead) ->
            assert(kept >= n); kept = kept - n;
            if :: (b_rights == 0 && kept == 0) -> nsq!b_gen,b_mscount :: else -> skip fi
       :: else -> skip   /* the kept references died with the proxy */
       fi }
  :: atomic { nsq?n,m ->
       if
#ifdef BROKEN_NO_MSCOUNT
       :: (import_live && !proxy_dead && n == b_gen) -> release()
#else
       :: (import_live && !proxy_dead && n == b_gen && m == b_mscount) -> release()
#endif
       :: else -> skip
       fi }
  :: atomic { r?DEAD,_ -> b_saw_dead = true;
#ifdef BROKEN_NO_TOMBSTONE
       import_live = false; proxy_dead = false; b_rights = 0;
#else
       import_live = true; proxy_dead = true; b_rights = 0;
#endif
       kept = 0;
       if :: received > 0 -> s!REL,received; received = 0 :: else -> skip fi }
  :: atomic { r?ACK,n ->
       if :: (n == 0 && proxy_dead) -> import_live = false; proxy_dead = false :: else -> skip fi }
  od
}

/* B's side of one-shot export i: its task uses the right or destroys it; a
 * death notice destroys a live proxy and settles the export. */
proctype OnceB(byte i) {
end:
  do
  :: atomic { (!lost && oproxy[i]) -> oproxy[i] = false; so[i]!OMSG }
  :: atomic { (!lost && oproxy[i]) -> oproxy[i] = false; so[i]!SOD }
  :: atomic { (!lost && oproxy[i]) -> oproxy[i] = false; oback!OHOME,i;
#ifdef BROKEN_ONCE_HOME_NOTIFIES
       so[i]!SOD   /* the proxy's right dropped with a send-once notification */
#else
       skip        /* the proxy went first: its right is a dead name */
#endif
     }
  :: atomic { ro[i]?DEAD ->
       if
#ifdef BROKEN_DEAD_DROPS_ONCE
       :: oproxy[i] -> oproxy[i] = false
#else
       :: oproxy[i] -> oproxy[i] = false; so[i]!SOD
#endif
       :: else -> skip            /* used or destroyed already, or not arrived */
       fi }
  od
}

/* A's side of one-shot export i. */
proctype OnceA(byte i) {
  byte n;
end:
  do
  :: atomic { oback?OHOME,n -> assert(ox_live[n]);
       if :: !ox_dead[n] -> settle(n) :: else -> skip fi;   /* a task holds it again; else a dead name */
       ox_live[n] = false; ox_dead[n] = false }
  :: atomic { so[i]?OMSG -> assert(ox_live[i]);
       if :: !ox_dead[i] -> settle(i) :: else -> skip fi;   /* delivered; else destroyed */
       ox_live[i] = false; ox_dead[i] = false }
  :: atomic { so[i]?SOD -> assert(ox_live[i]);
#ifdef BROKEN_DESTROY_DEAD_ONCE
       settle(i);
#else
       if :: !ox_dead[i] -> settle(i) :: else -> skip fi;   /* the receiver is notified */
#endif
       ox_live[i] = false; ox_dead[i] = false }
  od
}

proctype Quiescence() {
  byte i;
  timeout ->
    assert(!import_live && sent == 0 && !export_live && rights_in_flight == 0 && once_in_flight == 0);
    assert(len(s) == 0 && len(r) == 0 && len(carrier) == 0 && len(nsq) == 0 && len(back) == 0);
    assert(len(oback) == 0);
    assert(kept == 0 && home_in_flight == 0);
    assert(delivered + destroyed + lost_msgs == b_sent);
    for (i : 0 .. MAXONCE - 1) {
      assert(!ox_live[i] && !oproxy[i] && len(so[i]) == 0 && len(ro[i]) == 0);
      assert(o_settled[i] == (i < once_next -> 1 : 0))
    }
}

init {
  atomic {
    if :: may_lose = true :: may_lose = false fi;
    run NodeA(); run NodeB();
    run OnceA(0); run OnceA(1); run OnceB(0); run OnceB(1);
    run Quiescence()
  }
}
