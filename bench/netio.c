/* netio: TCP bulk transfer inside a riscv64 Linux guest, for bench/net.py.
 *
 *   netio send IPV4 PORT MIB   connect, send MIB MiB in 64 KiB writes, half-close, wait for the
 *                              peer to close, print `netio sent BYTES`
 *   netio recv PORT            listen on PORT, print `netio listening` once it does, accept one
 *                              connection, read it to the end in 64 KiB reads, close,
 *                              print `netio received BYTES`
 *
 * Large buffers keep the guest's own copying small next to the network path (busybox nc moves
 * the data in small pieces). No libc: system calls through guestsys.h.
 */

#define PROG "netio"
#include "guestsys.h"

#define SYS_socket 198
#define SYS_bind 200
#define SYS_listen 201
#define SYS_accept 202
#define SYS_connect 203
#define SYS_sendto 206
#define SYS_recvfrom 207
#define SYS_setsockopt 208
#define SYS_shutdown 210

#define AF_INET 2
#define SOCK_STREAM 1
#define SOL_SOCKET 1
#define SO_REUSEADDR 2
#define SHUT_WR 1
#define CHUNK 65536

static char buf[CHUNK] __attribute__((aligned(4096)));

static u64 parse(const char **s) {
    u64 v = 0;
    while (**s >= '0' && **s <= '9') v = v * 10 + (u64)(*(*s)++ - '0');
    return v;
}

static int streq(const char *a, const char *b) {
    while (*a && *a == *b) a++, b++;
    return *a == *b;
}

struct sockaddr_in { /* netinet/in.h: port and address in network byte order */
    unsigned short family, port;
    unsigned int addr;
    char zero[8];
};

static struct sockaddr_in address(const char *ip, const char *port) {
    struct sockaddr_in sa = {AF_INET, 0, 0, {0}};
    u64 p = parse(&port);
    sa.port = (unsigned short)(((p & 0xff) << 8) | (p >> 8));
    for (int i = 0; i < 4 && ip; i++) {
        sa.addr |= (unsigned int)(parse(&ip) & 0xff) << (8 * i);
        if (*ip == '.') ip++;
    }
    return sa;
}

static int do_send(const char *ip, const char *port, const char *mib) {
    struct sockaddr_in sa = address(ip, port);
    u64 total = parse(&mib) << 20, sent = 0;
    for (u64 i = 0; i < CHUNK; i++) buf[i] = (char)(i * 131 + 7);
    i64 fd = sys6(SYS_socket, AF_INET, SOCK_STREAM, 0, 0, 0, 0);
    if (fd < 0) die("socket", fd);
    i64 r = sys6(SYS_connect, fd, (i64)&sa, sizeof sa, 0, 0, 0);
    if (r < 0) die("connect", r);
    put("netio connected\n"); /* opens the upload phase for bench/ioprofile.py */
    while (sent < total) {
        u64 n = total - sent < CHUNK ? total - sent : CHUNK;
        r = sys6(SYS_sendto, fd, (i64)buf, (i64)n, 0, 0, 0);
        if (r <= 0) die("send", r);
        sent += (u64)r;
    }
    sys6(SYS_shutdown, fd, SHUT_WR, 0, 0, 0, 0);
    while (sys6(SYS_recvfrom, fd, (i64)buf, CHUNK, 0, 0, 0) > 0) {
    }
    sys6(SYS_close, fd, 0, 0, 0, 0, 0);
    put("netio sent ");
    put_u64(sent);
    put("\n");
    return 0;
}

static int do_recv(const char *port) {
    struct sockaddr_in sa = address("0.0.0.0", port);
    int one = 1;
    i64 ls = sys6(SYS_socket, AF_INET, SOCK_STREAM, 0, 0, 0, 0);
    if (ls < 0) die("socket", ls);
    sys6(SYS_setsockopt, ls, SOL_SOCKET, SO_REUSEADDR, (i64)&one, sizeof one, 0);
    i64 r = sys6(SYS_bind, ls, (i64)&sa, sizeof sa, 0, 0, 0);
    if (r < 0) die("bind", r);
    r = sys6(SYS_listen, ls, 1, 0, 0, 0, 0);
    if (r < 0) die("listen", r);
    put("netio listening\n");
    i64 fd = sys6(SYS_accept, ls, 0, 0, 0, 0, 0);
    if (fd < 0) die("accept", fd);
    put("netio accepted\n"); /* opens the download phase for bench/ioprofile.py */
    u64 got = 0;
    while ((r = sys6(SYS_recvfrom, fd, (i64)buf, CHUNK, 0, 0, 0)) > 0) got += (u64)r;
    if (r < 0) die("recv", r);
    sys6(SYS_close, fd, 0, 0, 0, 0, 0);
    sys6(SYS_close, ls, 0, 0, 0, 0, 0);
    put("netio received ");
    put_u64(got);
    put("\n");
    return 0;
}

int cmain(i64 *sp) {
    i64 argc = sp[0];
    char **argv = (char **)(sp + 1);
    if (argc == 5 && streq(argv[1], "send")) return do_send(argv[2], argv[3], argv[4]);
    if (argc == 3 && streq(argv[1], "recv")) return do_recv(argv[2]);
    put("usage: netio send IPV4 PORT MIB | netio recv PORT\n");
    return 2;
}
