// Batched UDP reads and sends for the TURN relay path. Swift's Glibc module exports neither sendmmsg nor
// recvmmsg nor struct mmsghdr (they need _GNU_SOURCE), nor UDP_SEGMENT's control message.
#pragma once
#include <netinet/in.h>
#include <stdint.h>

/// One datagram waiting to be sent: `length` bytes at `offset` in the caller's arena, from socket
/// `fd` to `address` (`address_length` bytes of it; an IPv4 address fits in a sockaddr_in6). When
/// `segment_size` is non-zero the bytes are several datagrams of that size (the last may be shorter)
/// sent with one UDP GSO write (UDP_SEGMENT). `fd` < 0 marks a datagram to skip.
struct cudp_datagram {
    int fd;
    uint32_t offset;
    uint32_t length;
    uint16_t segment_size;
    uint16_t address_length;
    struct sockaddr_in6 address;
};

/// Sends `count` datagrams without blocking; consecutive ones from the same socket go out in one
/// sendmmsg (up to 64 per call). A datagram the kernel refuses (too big for the path, a firewall, an
/// ICMP error reported on the socket) is skipped and the rest still go; when a socket's send buffer is
/// full, the rest of that socket's datagrams are dropped. Returns how many were not sent.
int cudp_send_batch(const unsigned char *arena, const struct cudp_datagram *datagrams, int count);

/// Reads up to `count` (at most 64) datagrams from `fd` without blocking, datagram i into bytes
/// [i * slot, (i + 1) * slot) of `buffer` and its source address into `from[i]` (a sockaddr_in or a
/// sockaddr_in6, as `sin6_family` says). `lengths[i]` is the datagram's length, or -1 when it was
/// longer than `slot` and got cut. Returns how many were read, or -1 with errno set (EAGAIN: none left).
int cudp_recv_batch(int fd, unsigned char *buffer, int slot, int count, struct sockaddr_in6 *from, int *lengths);
