#define _GNU_SOURCE
#include "CEpoll.h"
#include <string.h>
#include <sys/socket.h>

enum { max_batch = 64 };

/// Points message i at slot i of `buffers` (`lengths[i]` bytes of it, or the whole slot) and at its address.
static void describe(struct mmsghdr *messages, struct iovec *vectors, int count, unsigned char *buffers, int slot,
                     const int *lengths, struct sockaddr_in *addresses, int same_address) {
    memset(messages, 0, sizeof(struct mmsghdr) * (size_t)count);
    for (int i = 0; i < count; i++) {
        vectors[i].iov_base = buffers + (size_t)i * (size_t)slot;
        vectors[i].iov_len = (size_t)(lengths ? lengths[i] : slot);
        messages[i].msg_hdr.msg_name = &addresses[same_address ? 0 : i];
        messages[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_in);
        messages[i].msg_hdr.msg_iov = &vectors[i];
        messages[i].msg_hdr.msg_iovlen = 1;
    }
}

int cepoll_recv_batch(int fd, unsigned char *buffers, int slot, int count, struct sockaddr_in *from, int *lengths) {
    struct mmsghdr messages[max_batch];
    struct iovec vectors[max_batch];
    if (count > max_batch) count = max_batch;
    describe(messages, vectors, count, buffers, slot, NULL, from, 0);
    int n = recvmmsg(fd, messages, (unsigned)count, MSG_DONTWAIT, NULL);
    for (int i = 0; i < n; i++) lengths[i] = (int)messages[i].msg_len;
    return n;
}

int cepoll_send_batch(int fd, unsigned char *buffers, int slot, const int *lengths, const struct sockaddr_in *to,
                      int same_destination, int count) {
    struct mmsghdr messages[max_batch];
    struct iovec vectors[max_batch];
    if (count > max_batch) count = max_batch;
    describe(messages, vectors, count, buffers, slot, lengths, (struct sockaddr_in *)to, same_destination);
    return sendmmsg(fd, messages, (unsigned)count, MSG_DONTWAIT);
}
