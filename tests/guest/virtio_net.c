/* virtio_net: ARP and ICMP echo through the first virtio network device (virtio 1.2 section
 * 5.1) to the host end of its TAP.
 *
 * The guest is 10.0.2.15, the host 10.0.2.1 (the test gives the TAP that address). It reads
 * the MAC from the device config, negotiates no offloads (only VERSION_1, MAC, MTU, STATUS),
 * so every buffer starts with the 12-byte struct virtio_net_hdr (5.1.6, num_buffers
 * included with VERSION_1) and carries a whole Ethernet frame. It resolves 10.0.2.1 with
 * ARP (answering ARP requests for its own address meanwhile), then sends `pings=N`
 * (default 4) ICMP echo requests with a 56-byte pattern and checks each reply's addresses,
 * IP and ICMP checksums, id, sequence and payload. Frames it does not expect (IPv6, ...)
 * are ignored. Command line: pings=N, transport=mmio|pci (fail unless found there).
 * Success prints "virtio_net ok transport=<t> mac=<mac> replies=<n>" and exits 0; a
 * failure prints "virtio_net FAIL: <reason>" and exits 1. */
#include "kit/kit.h"
#include "kit/virtio.h"

/* 5.1.3 feature bits. */
#define VIRTIO_NET_F_MTU 3u
#define VIRTIO_NET_F_MAC 5u
#define VIRTIO_NET_F_STATUS 16u
/* 5.1.4 struct virtio_net_config offsets. */
#define VIRTIO_NET_CFG_MAC 0u
#define VIRTIO_NET_CFG_STATUS 6u
#define VIRTIO_NET_S_LINK_UP 1u
#define VIRTIO_NET_HDR_SIZE 12u /* 5.1.6 struct virtio_net_hdr with num_buffers */
#define RX_QUEUE 0u
#define TX_QUEUE 1u
#define RX_BUFFERS 16u
#define RX_BUFFER_SIZE 2048u /* 5.1.6.3.1: at least 1526 bytes without MRG_RXBUF/GSO */
#define TIMEOUT_MS 3000u
#define ARP_TRIES 5
#define EXIT_FAIL 1u

#define ETH_HLEN 14u
#define ETH_P_IP 0x0800u
#define ETH_P_ARP 0x0806u
#define ARP_LEN 28u
#define IP_HLEN 20u
#define ICMP_HLEN 8u
#define ICMP_ECHO_REPLY 0u
#define ICMP_ECHO_REQUEST 8u
#define IPPROTO_ICMP 1u
#define PING_PAYLOAD 56u
#define PING_ID 0x7065u

static const uint8_t kGuestIp[4] = {10, 0, 2, 15};
static const uint8_t kHostIp[4] = {10, 0, 2, 1};
static const uint8_t kBroadcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

static struct virtio_dev dev;
static struct virtq rxq, txq;
static uint8_t* rx_bufs; /* RX_BUFFERS x RX_BUFFER_SIZE */
static uint8_t* tx_hdr;  /* VIRTIO_NET_HDR_SIZE zero bytes */
static uint8_t* tx_frame;
static uint8_t mac[6], host_mac[6];
static bool host_mac_known;
static int replies;
static uint16_t waiting_seq; /* the echo sequence number being waited for, 0 if none */

__attribute__((noreturn)) static void failf(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  kit_printf("virtio_net FAIL: ");
  kit_vprintf(fmt, ap);
  kit_printf("\n");
  va_end(ap);
  exit_guest(EXIT_FAIL);
}

static uint16_t get_be16(const uint8_t* p) {
  return (uint16_t)(p[0] << 8 | p[1]);
}

static void put_be16(uint8_t* p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

/* RFC 1071 Internet checksum of len bytes; 0 when data holding a valid checksum is summed. */
static uint16_t inet_checksum(const uint8_t* p, uint32_t len) {
  uint32_t sum = 0;
  for (uint32_t i = 0; i + 1 < len; i += 2) {
    sum += get_be16(p + i);
  }
  if ((len & 1u) != 0) {
    sum += (uint32_t)p[len - 1] << 8;
  }
  while ((sum >> 16) != 0) {
    sum = (sum & 0xffffu) + (sum >> 16);
  }
  return (uint16_t)~sum;
}

static void post_rx(uint32_t i) {
  struct virtq_buf b = {(uint64_t)(uintptr_t)(rx_bufs + i * RX_BUFFER_SIZE), RX_BUFFER_SIZE};
  if (virtq_add(&rxq, &b, 0, 1) < 0) {
    failf("receive queue full");
  }
}

/* Sends the frame in tx_frame: header and frame in two descriptors (2.6.4: any framing). */
static void send_frame(uint32_t len) {
  if (len < 60) {
    memset(tx_frame + len, 0, 60 - len); /* minimum Ethernet frame without FCS */
    len = 60;
  }
  struct virtq_buf bufs[2] = {{(uint64_t)(uintptr_t)tx_hdr, VIRTIO_NET_HDR_SIZE},
                              {(uint64_t)(uintptr_t)tx_frame, len}};
  uint32_t used;
  if (!virtq_transfer(&txq, bufs, 2, 0, &used, TIMEOUT_MS)) {
    failf("transmit did not complete (device status 0x%x)", virtio_get_status(&dev));
  }
}

static uint8_t* eth_header(const uint8_t dst[6], uint16_t type) {
  memcpy(tx_frame, dst, 6);
  memcpy(tx_frame + 6, mac, 6);
  put_be16(tx_frame + 12, type);
  return tx_frame + ETH_HLEN;
}

/* RFC 826: op 1 request, 2 reply. */
static void send_arp(uint16_t op, const uint8_t dst_mac[6], const uint8_t target_mac[6],
                     const uint8_t target_ip[4]) {
  uint8_t* a = eth_header(dst_mac, ETH_P_ARP);
  put_be16(a, 1); /* Ethernet */
  put_be16(a + 2, ETH_P_IP);
  a[4] = 6;
  a[5] = 4;
  put_be16(a + 6, op);
  memcpy(a + 8, mac, 6);
  memcpy(a + 14, kGuestIp, 4);
  memcpy(a + 18, target_mac, 6);
  memcpy(a + 24, target_ip, 4);
  send_frame(ETH_HLEN + ARP_LEN);
}

static uint8_t ping_byte(uint16_t seq, uint32_t i) {
  return (uint8_t)(seq * 13u + i * 7u + 1u);
}

static void send_ping(uint16_t seq) {
  uint8_t* ip = eth_header(host_mac, ETH_P_IP);
  uint16_t total = IP_HLEN + ICMP_HLEN + PING_PAYLOAD;
  memset(ip, 0, IP_HLEN);
  ip[0] = 0x45; /* IPv4, 5 words */
  put_be16(ip + 2, total);
  put_be16(ip + 4, seq); /* identification */
  ip[8] = 64;            /* TTL */
  ip[9] = IPPROTO_ICMP;
  memcpy(ip + 12, kGuestIp, 4);
  memcpy(ip + 16, kHostIp, 4);
  put_be16(ip + 10, inet_checksum(ip, IP_HLEN));
  uint8_t* icmp = ip + IP_HLEN;
  memset(icmp, 0, ICMP_HLEN);
  icmp[0] = ICMP_ECHO_REQUEST;
  put_be16(icmp + 4, PING_ID);
  put_be16(icmp + 6, seq);
  for (uint32_t i = 0; i < PING_PAYLOAD; i++) {
    icmp[ICMP_HLEN + i] = ping_byte(seq, i);
  }
  put_be16(icmp + 2, inet_checksum(icmp, ICMP_HLEN + PING_PAYLOAD));
  send_frame(ETH_HLEN + total);
}

static void handle_arp(const uint8_t* a, uint32_t len) {
  if (len < ARP_LEN || get_be16(a) != 1 || get_be16(a + 2) != ETH_P_IP || a[4] != 6 || a[5] != 4) {
    return;
  }
  uint16_t op = get_be16(a + 6);
  if (op == 2 && memcmp(a + 14, kHostIp, 4) == 0 && memcmp(a + 24, kGuestIp, 4) == 0) {
    memcpy(host_mac, a + 8, 6);
    host_mac_known = true;
  } else if (op == 1 && memcmp(a + 24, kGuestIp, 4) == 0) {
    send_arp(2, a + 8, a + 8, a + 14);
  }
}

static void handle_ip(const uint8_t* ip, uint32_t len) {
  if (len < IP_HLEN || ip[0] != 0x45 || ip[9] != IPPROTO_ICMP ||
      memcmp(ip + 16, kGuestIp, 4) != 0) {
    return;
  }
  uint16_t total = get_be16(ip + 2);
  if (total < IP_HLEN + ICMP_HLEN || total > len) {
    failf("IP total length %u with %u bytes received", total, len);
  }
  if (inet_checksum(ip, IP_HLEN) != 0) {
    failf("bad IP header checksum in a received packet");
  }
  if (memcmp(ip + 12, kHostIp, 4) != 0) {
    failf("ICMP from %u.%u.%u.%u, expected the host", ip[12], ip[13], ip[14], ip[15]);
  }
  const uint8_t* icmp = ip + IP_HLEN;
  uint32_t icmp_len = total - IP_HLEN;
  if (icmp[0] != ICMP_ECHO_REPLY) {
    return;
  }
  if (inet_checksum(icmp, icmp_len) != 0) {
    failf("bad ICMP checksum in an echo reply");
  }
  uint16_t id = get_be16(icmp + 4), seq = get_be16(icmp + 6);
  if (id != PING_ID || seq != waiting_seq) {
    kit_printf("virtio_net: ignoring echo reply id=0x%x seq=%u\n", id, seq);
    return;
  }
  if (icmp_len != ICMP_HLEN + PING_PAYLOAD) {
    failf("echo reply seq %u has %u payload bytes", seq, icmp_len - ICMP_HLEN);
  }
  for (uint32_t i = 0; i < PING_PAYLOAD; i++) {
    if (icmp[ICMP_HLEN + i] != ping_byte(seq, i)) {
      failf("echo reply seq %u payload byte %u differs", seq, i);
    }
  }
  replies++;
  waiting_seq = 0;
}

/* Handles one received buffer if there is one; false when the queue had none. */
static bool receive_one(void) {
  uint32_t head, len;
  if (!virtq_poll(&rxq, &head, &len)) {
    return false;
  }
  uint64_t base = (uint64_t)(uintptr_t)rx_bufs;
  uint64_t addr = rxq.desc[head].addr;
  if (addr < base || addr >= base + RX_BUFFERS * RX_BUFFER_SIZE) {
    failf("used head %u points at 0x%lx, not a receive buffer", head, addr);
  }
  uint32_t i = (uint32_t)((addr - base) / RX_BUFFER_SIZE);
  if (len < VIRTIO_NET_HDR_SIZE + ETH_HLEN || len > RX_BUFFER_SIZE) {
    failf("received length %u", len);
  }
  const uint8_t* frame = rx_bufs + i * RX_BUFFER_SIZE + VIRTIO_NET_HDR_SIZE;
  uint32_t frame_len = len - VIRTIO_NET_HDR_SIZE;
  const uint8_t* h = rx_bufs + i * RX_BUFFER_SIZE;
  /* 5.1.6.4: num_buffers is 1 without MRG_RXBUF; no offloads means no flags or GSO. */
  if (h[0] != 0 || h[1] != 0 || h[10] != 1 || h[11] != 0) {
    failf("receive header flags=0x%x gso=0x%x num_buffers=%u", h[0], h[1], h[10] | h[11] << 8);
  }
  if (memcmp(frame, mac, 6) == 0 || memcmp(frame, kBroadcast, 6) == 0) {
    uint16_t type = get_be16(frame + 12);
    if (type == ETH_P_ARP) {
      handle_arp(frame + ETH_HLEN, frame_len - ETH_HLEN);
    } else if (type == ETH_P_IP) {
      handle_ip(frame + ETH_HLEN, frame_len - ETH_HLEN);
    }
  }
  post_rx(i);
  virtq_kick(&rxq);
  return true;
}

/* Receives until done() or timeout_ms passed; returns done(). */
static bool receive_until(bool (*done)(void), uint32_t timeout_ms) {
  uint64_t deadline = virtio_deadline(timeout_ms);
  while (!done()) {
    if (!receive_one()) {
      if (virtio_expired(deadline)) {
        return false;
      }
      __asm__ volatile("pause" : : : "memory");
    }
  }
  return true;
}

static bool arp_resolved(void) {
  return host_mac_known;
}

static bool echo_answered(void) {
  return waiting_seq == 0;
}

static bool value_is(const char* v, const char* s) {
  size_t n = kit_strlen(s);
  return memcmp(v, s, n) == 0 && (v[n] == '\0' || v[n] == ' ');
}

void guest_main(const struct petrel_boot_info* boot_info) {
  (void)boot_info;
  if (!virtio_find(VIRTIO_ID_NET, 0, &dev)) {
    failf("no virtio network device");
  }
  const char* v;
  if (kit_cmdline_find("transport", &v) && !value_is(v, virtio_transport_name(&dev))) {
    failf("NIC found on %s, not on the transport asked for", virtio_transport_name(&dev));
  }
  uint64_t pings = 4;
  if (kit_cmdline_find("pings", &v) &&
      (!kit_cmdline_u64("pings", &pings) || pings == 0 || pings > 1000)) {
    failf("pings= wants a number from 1 to 1000");
  }
  uint64_t wanted =
      1ull << VIRTIO_NET_F_MAC | 1ull << VIRTIO_NET_F_MTU | 1ull << VIRTIO_NET_F_STATUS;
  if (!virtio_init(&dev, wanted) || !virtq_setup(&dev, &rxq, RX_QUEUE, 64) ||
      !virtq_setup(&dev, &txq, TX_QUEUE, 64)) {
    failf("device initialisation");
  }
  if (!virtio_has(&dev, VIRTIO_NET_F_MAC)) {
    failf("device offers no MAC address");
  }
  for (uint32_t i = 0; i < 6; i++) {
    mac[i] = virtio_config_read8(&dev, VIRTIO_NET_CFG_MAC + i);
  }
  rx_bufs = kit_alloc(RX_BUFFERS * RX_BUFFER_SIZE, 4096);
  tx_hdr = kit_alloc(VIRTIO_NET_HDR_SIZE, 16);
  tx_frame = kit_alloc(RX_BUFFER_SIZE, 64);
  if (rx_bufs == NULL || tx_hdr == NULL || tx_frame == NULL) {
    failf("out of memory");
  }
  memset(tx_hdr, 0, VIRTIO_NET_HDR_SIZE);
  for (uint32_t i = 0; i < RX_BUFFERS; i++) {
    post_rx(i);
  }
  virtio_driver_ok(&dev);
  virtq_kick(&rxq);
  if (virtio_has(&dev, VIRTIO_NET_F_STATUS) &&
      (virtio_config_read16(&dev, VIRTIO_NET_CFG_STATUS) & VIRTIO_NET_S_LINK_UP) == 0) {
    failf("link is down");
  }
  kit_printf("virtio_net mac=%02x:%02x:%02x:%02x:%02x:%02x\n", mac[0], mac[1], mac[2], mac[3],
             mac[4], mac[5]);

  static const uint8_t zero_mac[6];
  for (int t = 0; t < ARP_TRIES && !host_mac_known; t++) {
    send_arp(1, kBroadcast, zero_mac, kHostIp);
    receive_until(arp_resolved, TIMEOUT_MS);
  }
  if (!arp_resolved()) {
    failf("no ARP reply from 10.0.2.1");
  }
  kit_printf("virtio_net host mac=%02x:%02x:%02x:%02x:%02x:%02x\n", host_mac[0], host_mac[1],
             host_mac[2], host_mac[3], host_mac[4], host_mac[5]);

  for (uint16_t seq = 1; seq <= pings; seq++) {
    waiting_seq = seq;
    send_ping(seq);
    if (!receive_until(echo_answered, TIMEOUT_MS)) {
      failf("no echo reply for seq %u (replies so far %d)", seq, replies);
    }
  }
  if ((virtio_get_status(&dev) & VIRTIO_STATUS_DEVICE_NEEDS_RESET) != 0) {
    failf("device reports DEVICE_NEEDS_RESET");
  }
  kit_printf("virtio_net ok transport=%s mac=%02x:%02x:%02x:%02x:%02x:%02x replies=%d\n",
             virtio_transport_name(&dev), mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], replies);
}
