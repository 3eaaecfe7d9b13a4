#define _GNU_SOURCE
#include "CUDPBatch.h"
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif

enum { max_batch = 64 };

/// Sends datagrams[0..<count] (all from one socket); returns how many the kernel refused.
static int send_run(const unsigned char *arena, const struct cudp_datagram *datagrams, int count) {
    struct mmsghdr messages[max_batch];
    struct iovec vectors[max_batch];
    union {
        char bytes[CMSG_SPACE(sizeof(uint16_t))];
        struct cmsghdr align;
    } controls[max_batch];
    memset(messages, 0, sizeof(struct mmsghdr) * (size_t)count);
    for (int i = 0; i < count; i++) {
        const struct cudp_datagram *d = &datagrams[i];
        vectors[i].iov_base = (void *)(arena + d->offset);
        vectors[i].iov_len = d->length;
        messages[i].msg_hdr.msg_name = (void *)&d->address;
        messages[i].msg_hdr.msg_namelen = d->address_length;
        messages[i].msg_hdr.msg_iov = &vectors[i];
        messages[i].msg_hdr.msg_iovlen = 1;
        if (d->segment_size > 0) {
            memset(controls[i].bytes, 0, sizeof(controls[i].bytes));
            messages[i].msg_hdr.msg_control = controls[i].bytes;
            messages[i].msg_hdr.msg_controllen = sizeof(controls[i].bytes);
            struct cmsghdr *c = CMSG_FIRSTHDR(&messages[i].msg_hdr);
            c->cmsg_level = SOL_UDP;
            c->cmsg_type = UDP_SEGMENT;
            c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
            memcpy(CMSG_DATA(c), &d->segment_size, sizeof(uint16_t));
        }
    }
    int refused = 0;
    int sent = 0;
    while (sent < count) {
        int n = sendmmsg(datagrams[0].fd, messages + sent, (unsigned)(count - sent), MSG_DONTWAIT);
        if (n > 0) {
            sent += n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) {
            refused += count - sent;  // the socket's send buffer is full: the rest would fail the same way
            break;
        } else {
            refused++;  // this one is refused (e.g. too big for the path): skip it, send the rest
            sent++;
        }
    }
    return refused;
}

int cudp_send_batch(const unsigned char *arena, const struct cudp_datagram *datagrams, int count) {
    int refused = 0;
    int start = 0;
    while (start < count) {
        int fd = datagrams[start].fd;
        int end = start + 1;
        while (end < count && end - start < max_batch && datagrams[end].fd == fd) end++;
        if (fd >= 0) refused += send_run(arena, datagrams + start, end - start);
        start = end;
    }
    return refused;
}

int cudp_recv_batch(int fd, unsigned char *buffer, int slot, int count, struct sockaddr_in6 *from, int *lengths) {
    struct mmsghdr messages[max_batch];
    struct iovec vectors[max_batch];
    if (count > max_batch) count = max_batch;
    memset(messages, 0, sizeof(struct mmsghdr) * (size_t)count);
    for (int i = 0; i < count; i++) {
        vectors[i].iov_base = buffer + (size_t)i * (size_t)slot;
        vectors[i].iov_len = (size_t)slot;
        messages[i].msg_hdr.msg_name = &from[i];
        messages[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_in6);
        messages[i].msg_hdr.msg_iov = &vectors[i];
        messages[i].msg_hdr.msg_iovlen = 1;
    }
    int n;
    do {
        n = recvmmsg(fd, messages, (unsigned)count, MSG_DONTWAIT, NULL);
    } while (n < 0 && errno == EINTR);
    for (int i = 0; i < n; i++) {
        lengths[i] = (messages[i].msg_hdr.msg_flags & MSG_TRUNC) ? -1 : (int)messages[i].msg_len;
    }
    return n;
}
