// nfq_delay: holds each packet of one NFQUEUE for a delay, then lets it go on, in the
// order the packets came. The delay fault of netns_cluster.sh, for kernels without
// sch_netem: the script sends a member's incoming packets to queue Q in the member's
// network namespace and runs this helper there.
//
//   nfq_delay QUEUE DELAY_MS [JITTER_MS [SEED]]
//
// Each packet is released DELAY_MS plus a random 0..JITTER_MS after it arrives, but
// never before the packet ahead of it: a jitter slows packets down without reordering
// them (unlike netem's), so TCP sees delay, not spurious reordering. Prints "ready" on
// stdout once the queue is bound, so a caller adds the NFQUEUE rule only after that.
// On SIGTERM or SIGINT it releases every held packet at once and exits 0.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct held {
  uint32_t id;
  int64_t release_ns;  // CLOCK_MONOTONIC
};

// The packets held, oldest first: a ring that grows.
static struct held* ring;
static size_t ring_capacity, ring_head, ring_count;

static int64_t delay_ns, jitter_ns, last_release_ns;
static unsigned short random_state[3];
static volatile sig_atomic_t stopping;

static void die(const char* what) {
  fprintf(stderr, "nfq_delay: %s: %s\n", what, strerror(errno));
  exit(1);
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void hold(uint32_t id) {
  if (ring_count == ring_capacity) {
    size_t capacity = ring_capacity ? 2 * ring_capacity : 1024;
    struct held* grown = malloc(capacity * sizeof *grown);
    if (grown == NULL) die("malloc");
    for (size_t i = 0; i < ring_count; i++) grown[i] = ring[(ring_head + i) % ring_capacity];
    free(ring);
    ring = grown;
    ring_capacity = capacity;
    ring_head = 0;
  }
  int64_t release = now_ns() + delay_ns;
  if (jitter_ns > 0) release += (int64_t)(erand48(random_state) * (double)(jitter_ns + 1));
  // Never ahead of the packet before it: the order is kept.
  if (release < last_release_ns) release = last_release_ns;
  last_release_ns = release;
  ring[(ring_head + ring_count) % ring_capacity] = (struct held){id, release};
  ring_count++;
}

static int on_packet(struct nfq_q_handle* queue, struct nfgenmsg* message,
                     struct nfq_data* data, void* context) {
  (void)queue, (void)message, (void)context;
  struct nfqnl_msg_packet_hdr* header = nfq_get_msg_packet_hdr(data);
  if (header != NULL) hold(ntohl(header->packet_id));
  return 0;
}

// Lets go every held packet due by `now` (all of them when `now` is INT64_MAX).
static void release_due(struct nfq_q_handle* queue, int64_t now) {
  while (ring_count > 0 && ring[ring_head].release_ns <= now) {
    // A failed verdict (the packet gone with its interface) loses only that packet.
    nfq_set_verdict(queue, ring[ring_head].id, NF_ACCEPT, 0, NULL);
    ring_head = (ring_head + 1) % ring_capacity;
    ring_count--;
  }
}

static void on_signal(int signal_number) {
  (void)signal_number;
  stopping = 1;
}

static long parse(const char* text, const char* what, long max) {
  char* end;
  errno = 0;
  long value = strtol(text, &end, 10);
  if (errno != 0 || *end != '\0' || end == text || value < 0 || value > max) {
    fprintf(stderr, "nfq_delay: %s '%s' is not a number in 0..%ld\n", what, text, max);
    exit(2);
  }
  return value;
}

int main(int argc, char** argv) {
  if (argc < 3 || argc > 5) {
    fprintf(stderr, "usage: nfq_delay QUEUE DELAY_MS [JITTER_MS [SEED]]\n");
    return 2;
  }
  uint16_t queue_number = (uint16_t)parse(argv[1], "QUEUE", 65535);
  delay_ns = parse(argv[2], "DELAY_MS", 3600000) * 1000000;
  jitter_ns = argc > 3 ? parse(argv[3], "JITTER_MS", 3600000) * 1000000 : 0;
  long seed = argc > 4 ? parse(argv[4], "SEED", 0x7fffffff) : (long)getpid() ^ (long)now_ns();
  random_state[0] = 0x330e;
  random_state[1] = (unsigned short)seed;
  random_state[2] = (unsigned short)(seed >> 16);

  struct sigaction action = {.sa_handler = on_signal};
  sigaction(SIGTERM, &action, NULL);
  sigaction(SIGINT, &action, NULL);

  struct nfq_handle* handle = nfq_open();
  if (handle == NULL) die("nfq_open (is nfnetlink_queue available?)");
  struct nfq_q_handle* queue = nfq_create_queue(handle, queue_number, on_packet, NULL);
  if (queue == NULL) die("binding the queue (is another helper bound to it?)");
  // Only the packet id is needed, not the payload.
  if (nfq_set_mode(queue, NFQNL_COPY_META, 0) < 0 &&
      nfq_set_mode(queue, NFQNL_COPY_PACKET, 0) < 0) {
    die("nfq_set_mode");
  }
  // Room for a long delay at a high rate: the kernel drops what does not fit, as a
  // full router queue would.
  nfq_set_queue_maxlen(queue, 65536);
  nfnl_rcvbufsiz(nfq_nfnlh(handle), 8 << 20);
  int fd = nfq_fd(handle);

  printf("ready\n");
  fflush(stdout);

  char buffer[65536];
  while (!stopping) {
    int64_t now = now_ns();
    release_due(queue, now);
    int timeout_ms = -1;
    if (ring_count > 0) {
      int64_t wait_ns = ring[ring_head].release_ns - now;
      timeout_ms = (int)((wait_ns + 999999) / 1000000);
    }
    struct pollfd poll_fd = {.fd = fd, .events = POLLIN};
    int ready = poll(&poll_fd, 1, timeout_ms);
    if (ready < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    if (ready == 0) continue;
    // Drain what is queued without blocking, so that arrival times stay accurate.
    for (;;) {
      ssize_t length = recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
      if (length < 0) {
        // ENOBUFS: the kernel dropped messages it could not deliver; go on.
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ENOBUFS) break;
        die("recv");
      }
      nfq_handle_packet(handle, buffer, (int)length);
    }
  }
  release_due(queue, INT64_MAX);
  nfq_destroy_queue(queue);
  nfq_close(handle);
  return 0;
}
