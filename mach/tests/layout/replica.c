/* A replica of GNU Mach's current user-space message structures (see
 * ../../../docs/architecture.md, "Layout truth"). Compiled with -m64 and -m32 by
 * tests/layout.rs; gcc, not our reading, decides bitfield placement.
 *
 * Output: one "key value" line per fact, values in decimal, and golden messages
 * as "golden NAME HEX". */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef unsigned int natural_t;
typedef int integer_t;
typedef unsigned int mach_port_name_t;
typedef mach_port_name_t mach_port_t; /* user space: a name */
#ifdef __LP64__
typedef uintptr_t rpc_uintptr_t;
#else
typedef uint32_t rpc_uintptr_t;
#endif
typedef unsigned int mach_msg_bits_t;
typedef unsigned int mach_msg_size_t;
typedef natural_t mach_port_seqno_t;
typedef integer_t mach_msg_id_t;
typedef natural_t mach_msg_type_number_t;

typedef struct {
	mach_msg_bits_t msgh_bits;
	mach_msg_size_t msgh_size;
	union {
		mach_port_t msgh_remote_port;
		rpc_uintptr_t msgh_remote_port_do_not_use;
	};
	union {
		mach_port_t msgh_local_port;
		rpc_uintptr_t msgh_protected_payload;
	};
	mach_port_seqno_t msgh_seqno;
	mach_msg_id_t msgh_id;
} mach_msg_header_t;

typedef struct {
	union {
		mach_port_name_t name;
		uintptr_t kernel_port_do_not_use;
	};
} mach_port_name_inlined_t;

typedef struct {
#ifdef __LP64__
	unsigned int msgt_name : 8, msgt_size : 16, msgt_unused : 5,
		msgt_inline : 1, msgt_longform : 1, msgt_deallocate : 1;
	mach_msg_type_number_t msgt_number;
#else
	unsigned int msgt_name : 8, msgt_size : 8, msgt_number : 12,
		msgt_inline : 1, msgt_longform : 1, msgt_deallocate : 1,
		msgt_unused : 1;
#endif
} __attribute__((aligned(__alignof__(uintptr_t)))) mach_msg_type_t;

typedef struct {
#ifdef __LP64__
	union {
		mach_msg_type_t msgtl_header;
		struct {
			unsigned int msgtl_name : 8, msgtl_size : 16,
				msgtl_unused : 5, msgtl_inline : 1,
				msgtl_longform : 1, msgtl_deallocate : 1;
			mach_msg_type_number_t msgtl_number;
		};
	};
#else
	mach_msg_type_t msgtl_header;
	unsigned short msgtl_name;
	unsigned short msgtl_size;
	natural_t msgtl_number;
#endif
} __attribute__((aligned(__alignof__(uintptr_t)))) mach_msg_type_long_t;

/* notify.h */
typedef struct {
	mach_msg_header_t not_header;
	mach_msg_type_t not_type;
	mach_port_name_t not_port;
} mach_dead_name_notification_t;
typedef struct {
	mach_msg_header_t not_header;
	mach_msg_type_t not_type;
	mach_port_t not_port;
} mach_port_destroyed_notification_t;
typedef struct {
	mach_msg_header_t not_header;
	mach_msg_type_t not_type;
	unsigned int not_count;
} mach_no_senders_notification_t;

#define ALIGNMENT (sizeof(uintptr_t))
#define PORT_BITS (8 * sizeof(mach_port_name_inlined_t))

static unsigned char buf[65536];
static size_t len;

static void put(const void *p, size_t n)
{
	memcpy(buf + len, p, n);
	len += n;
}

static void pad(void)
{
	while (len % ALIGNMENT)
		buf[len++] = 0;
}

static void header(unsigned bits, unsigned remote, unsigned local, unsigned seqno, int id)
{
	mach_msg_header_t h;
	memset(&h, 0, sizeof h);
	h.msgh_bits = bits;
	h.msgh_remote_port = remote;
	h.msgh_local_port = local;
	h.msgh_seqno = seqno;
	h.msgh_id = id;
	len = 0;
	put(&h, sizeof h);
}

/* A short descriptor, fields set through the compiler's bitfields. */
static void type(unsigned name, unsigned size, unsigned number, int is_inline, int dealloc)
{
	mach_msg_type_t t;
	memset(&t, 0, sizeof t);
	t.msgt_name = name;
	t.msgt_size = size;
	t.msgt_number = number;
	t.msgt_inline = is_inline;
	t.msgt_longform = 0;
	t.msgt_deallocate = dealloc;
	put(&t, sizeof t);
}

/* A long descriptor (on x86_64 the same 8 bytes with the longform bit). */
static void type_long(unsigned name, unsigned size, unsigned number, int is_inline, int dealloc)
{
	mach_msg_type_long_t t;
	memset(&t, 0, sizeof t);
#ifdef __LP64__
	t.msgtl_name = name;
	t.msgtl_size = size;
	t.msgtl_number = number;
	t.msgtl_inline = is_inline;
	t.msgtl_longform = 1;
	t.msgtl_deallocate = dealloc;
#else
	t.msgtl_header.msgt_inline = is_inline;
	t.msgtl_header.msgt_longform = 1;
	t.msgtl_header.msgt_deallocate = dealloc;
	t.msgtl_name = name;
	t.msgtl_size = size;
	t.msgtl_number = number;
#endif
	put(&t, sizeof t);
}

static void port(mach_port_name_t name)
{
	mach_port_name_inlined_t p;
	memset(&p, 0, sizeof p);
	p.name = name;
	put(&p, sizeof p);
}

static void pointer(uintptr_t addr)
{
	put(&addr, sizeof addr);
}

static void finish(const char *name)
{
	pad();
	((mach_msg_header_t *)buf)->msgh_size = len;
	printf("golden %s ", name);
	for (size_t i = 0; i < len; i++)
		printf("%02x", buf[i]);
	printf("\n");
}

static unsigned word0(mach_msg_type_t t)
{
	unsigned w;
	memcpy(&w, &t, sizeof w);
	return w;
}

int main(void)
{
	printf("sizeof_header %zu\n", sizeof(mach_msg_header_t));
	printf("offset_bits %zu\n", offsetof(mach_msg_header_t, msgh_bits));
	printf("offset_size %zu\n", offsetof(mach_msg_header_t, msgh_size));
	printf("offset_remote %zu\n", offsetof(mach_msg_header_t, msgh_remote_port));
	printf("offset_local %zu\n", offsetof(mach_msg_header_t, msgh_local_port));
	printf("offset_seqno %zu\n", offsetof(mach_msg_header_t, msgh_seqno));
	printf("offset_id %zu\n", offsetof(mach_msg_header_t, msgh_id));
	printf("sizeof_type %zu\n", sizeof(mach_msg_type_t));
	printf("alignof_type %zu\n", __alignof__(mach_msg_type_t));
	printf("sizeof_type_long %zu\n", sizeof(mach_msg_type_long_t));
	printf("sizeof_port_inlined %zu\n", sizeof(mach_port_name_inlined_t));
	printf("alignment %zu\n", ALIGNMENT);
	printf("sizeof_dead_name_notification %zu\n", sizeof(mach_dead_name_notification_t));
	printf("sizeof_port_destroyed_notification %zu\n", sizeof(mach_port_destroyed_notification_t));
	printf("sizeof_no_senders_notification %zu\n", sizeof(mach_no_senders_notification_t));

	/* Each bitfield alone at its maximum, to locate it in the first word. */
	mach_msg_type_t t;
	memset(&t, 0, sizeof t); t.msgt_name = 0xff; printf("bits_name %u\n", word0(t));
	memset(&t, 0, sizeof t); t.msgt_size = (1u << (8 * sizeof(uintptr_t) == 64 ? 16 : 8)) - 1; printf("bits_size %u\n", word0(t));
	memset(&t, 0, sizeof t); t.msgt_unused = (1u << (8 * sizeof(uintptr_t) == 64 ? 5 : 1)) - 1; printf("bits_unused %u\n", word0(t));
	memset(&t, 0, sizeof t); t.msgt_inline = 1; printf("bits_inline %u\n", word0(t));
	memset(&t, 0, sizeof t); t.msgt_longform = 1; printf("bits_longform %u\n", word0(t));
	memset(&t, 0, sizeof t); t.msgt_deallocate = 1; printf("bits_deallocate %u\n", word0(t));
#ifndef __LP64__
	memset(&t, 0, sizeof t); t.msgt_number = 0xfff; printf("bits_number %u\n", word0(t));
#endif
	/* mach-facts.md: one inline MOVE_SEND port on i386 is 0x10012011. */
	memset(&t, 0, sizeof t); t.msgt_name = 17; t.msgt_size = 32; t.msgt_number = 1; t.msgt_inline = 1;
	printf("desc_move_send_32 %u\n", word0(t));

	/* memory_object_lock_request(control; offset, size, should_return,
	 * should_flush, lock_value, reply_to = MAKE_SEND_ONCE). */
	header(19 | (0 << 8) | 0x80000000u, 0x103, 0, 0, 2044);
	type(11, 64, 1, 1, 0); { uint64_t v = 0x2000; put(&v, 8); } pad();
	type(11, 64, 1, 1, 0); { uint64_t v = 0x4000; put(&v, 8); } pad();
	type(2, 32, 1, 1, 0); { int v = 1; put(&v, 4); } pad();
	type(0, 32, 1, 1, 0); { int v = 1; put(&v, 4); } pad();
	type(2, 32, 1, 1, 0); { int v = 2; put(&v, 4); } pad();
	type(21, PORT_BITS, 1, 1, 0); port(0x207); pad();
	finish("lock_request");

	/* A reply: RetCode plus a 3-byte char array (padding follows). */
	header(18, 0x301, 0, 7, 2140);
	type(2, 32, 1, 1, 0); { int v = 0; put(&v, 4); } pad();
	type(8, 8, 3, 1, 0); put("abc", 3); pad();
	finish("reply_with_chars");

	/* Out-of-line bytes (deallocate), an OOL port array, and a long descriptor. */
	header(17 | (21 << 8) | 0x80000000u, 0x11, 0x12, 0, 21000);
	type(9, 8, 1000, 0, 1); pointer(0x10000); pad();
	type(17, 32, 2, 0, 0); pointer(0x20000); pad();
	type_long(9, 8, 5000, 0, 0); pointer(0x30000); pad();
	type_long(2, 32, 2, 1, 0); { int v[2] = {-1, 5}; put(v, 8); } pad();
	finish("ool_and_long");

	/* The kernel's dead-name notification (notify.h), as received: the bits are
	 * swapped, msgh_local_port names the notify port. */
	{
		mach_dead_name_notification_t n;
		memset(&n, 0, sizeof n);
		n.not_header.msgh_bits = 18 << 8;
		n.not_header.msgh_size = sizeof n;
		n.not_header.msgh_remote_port = 0;
		n.not_header.msgh_local_port = 0x505;
		n.not_header.msgh_seqno = 3;
		n.not_header.msgh_id = 72;
		n.not_type.msgt_name = 15;
		n.not_type.msgt_size = 32;
		n.not_type.msgt_number = 1;
		n.not_type.msgt_inline = 1;
		n.not_port = 0x606;
		len = 0;
		put(&n, sizeof n);
		finish("dead_name_notification");
	}
	/* Two inline rights of mixed dispositions cannot share a descriptor: two items. */
	header(17 | 0x80000000u, 0x9, 0, 0, 1000);
	type(20, PORT_BITS, 2, 1, 0); port(0x10); port(0x11); pad();
	type(16, PORT_BITS, 1, 1, 0); port(0x12); pad();
	finish("two_port_items");
	return 0;
}
