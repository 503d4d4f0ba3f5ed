// ethtool netlink client on libmnl (see ethtool.h): resolve the "ethtool" generic netlink
// family, then one GET or SET request per call, with extended ACK so the driver's own
// reason for a refusal reaches the report.
#include "ethtool.h"

#include <libmnl/libmnl.h>
#include <linux/ethtool_netlink.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

namespace axon::tuning {
namespace {

struct ParamInfo {
  EthtoolParam param;
  const char* name;
  bool channels;       // ETHTOOL_MSG_CHANNELS_* (else COALESCE)
  std::uint16_t attr;  // value attribute
  std::uint16_t max;   // channels: the *_MAX attribute; 0 otherwise
  bool u8;             // NLA_U8 (adaptive flags) instead of NLA_U32
};

constexpr ParamInfo kParams[] = {
    {EthtoolParam::rx_count, "rx", true, ETHTOOL_A_CHANNELS_RX_COUNT, ETHTOOL_A_CHANNELS_RX_MAX, false},
    {EthtoolParam::tx_count, "tx", true, ETHTOOL_A_CHANNELS_TX_COUNT, ETHTOOL_A_CHANNELS_TX_MAX, false},
    {EthtoolParam::other_count, "other", true, ETHTOOL_A_CHANNELS_OTHER_COUNT, ETHTOOL_A_CHANNELS_OTHER_MAX, false},
    {EthtoolParam::combined_count, "combined", true, ETHTOOL_A_CHANNELS_COMBINED_COUNT, ETHTOOL_A_CHANNELS_COMBINED_MAX,
     false},
    {EthtoolParam::rx_usecs, "rx-usecs", false, ETHTOOL_A_COALESCE_RX_USECS, 0, false},
    {EthtoolParam::rx_frames, "rx-frames", false, ETHTOOL_A_COALESCE_RX_MAX_FRAMES, 0, false},
    {EthtoolParam::tx_usecs, "tx-usecs", false, ETHTOOL_A_COALESCE_TX_USECS, 0, false},
    {EthtoolParam::tx_frames, "tx-frames", false, ETHTOOL_A_COALESCE_TX_MAX_FRAMES, 0, false},
    {EthtoolParam::adaptive_rx, "adaptive-rx", false, ETHTOOL_A_COALESCE_USE_ADAPTIVE_RX, 0, true},
    {EthtoolParam::adaptive_tx, "adaptive-tx", false, ETHTOOL_A_COALESCE_USE_ADAPTIVE_TX, 0, true},
};

const ParamInfo& info(EthtoolParam param) {
  for (const auto& p : kParams) {
    if (p.param == param) return p;
  }
  return kParams[0];
}

struct SocketCloser {
  void operator()(mnl_socket* s) const noexcept { mnl_socket_close(s); }
};
using Socket = std::unique_ptr<mnl_socket, SocketCloser>;

// What one request learned: the attributes of the reply, or the error and its reason.
struct Exchange {
  const ParamInfo* param = nullptr;
  std::uint16_t want_attr = 0;
  std::optional<std::uint32_t> value;
  std::uint16_t family = 0;  // CTRL_CMD_GETFAMILY reply
  int error = 0;             // positive errno from NLMSG_ERROR
  std::string extack;        // the kernel's message, if any
  bool replied = false;      // a reply message (not an ACK) arrived
};

// mnl_attr_for_each relies on C's implicit void* conversions; this is the same walk.
template <typename Fn>
void for_each_attr(const nlmsghdr* nlh, std::size_t offset, Fn&& fn) {
  const auto* attr = static_cast<const nlattr*>(mnl_nlmsg_get_payload_offset(nlh, offset));
  const auto* tail = static_cast<const char*>(mnl_nlmsg_get_payload_tail(nlh));
  while (mnl_attr_ok(attr, int(tail - reinterpret_cast<const char*>(attr)))) {
    fn(attr);
    attr = mnl_attr_next(attr);
  }
}

int on_error(const nlmsghdr* nlh, void* data) {
  auto* ex = static_cast<Exchange*>(data);
  const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
  if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(nlmsgerr))) {
    ex->error = EBADMSG;
    return MNL_CB_ERROR;
  }
  if (err->error == 0) return MNL_CB_STOP;  // the ACK of a SET
  ex->error = -err->error;
  if (nlh->nlmsg_flags & NLM_F_ACK_TLVS) {
    // Extended ACK: TLVs follow the error and the echoed request (only its header when
    // the kernel capped it).
    std::size_t offset = sizeof(nlmsgerr);
    if (!(nlh->nlmsg_flags & NLM_F_CAPPED)) offset += err->msg.nlmsg_len - sizeof(nlmsghdr);
    for_each_attr(nlh, offset, [&](const nlattr* attr) {
      if (mnl_attr_get_type(attr) == NLMSGERR_ATTR_MSG && mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) >= 0) {
        ex->extack = mnl_attr_get_str(attr);
      }
    });
  }
  return MNL_CB_ERROR;
}

int on_family(const nlmsghdr* nlh, void* data) {
  auto* ex = static_cast<Exchange*>(data);
  ex->replied = true;
  for_each_attr(nlh, sizeof(genlmsghdr), [&](const nlattr* attr) {
    if (mnl_attr_get_type(attr) == CTRL_ATTR_FAMILY_ID && mnl_attr_validate(attr, MNL_TYPE_U16) >= 0) {
      ex->family = mnl_attr_get_u16(attr);
    }
  });
  return MNL_CB_OK;
}

int on_reply(const nlmsghdr* nlh, void* data) {
  auto* ex = static_cast<Exchange*>(data);
  ex->replied = true;
  for_each_attr(nlh, sizeof(genlmsghdr), [&](const nlattr* attr) {
    if (mnl_attr_get_type(attr) != ex->want_attr || ex->param == nullptr) return;
    if (ex->param->u8) {
      if (mnl_attr_validate(attr, MNL_TYPE_U8) >= 0) ex->value = mnl_attr_get_u8(attr);
    } else if (mnl_attr_validate(attr, MNL_TYPE_U32) >= 0) {
      ex->value = mnl_attr_get_u32(attr);
    }
  });
  return MNL_CB_OK;
}

// Sends the message in `buf` and runs the callbacks over every reply until the ACK,
// the answer or an error. Returns false with `why` set on a socket-level failure.
bool transact(mnl_socket* sock, nlmsghdr* nlh, mnl_cb_t cb, Exchange& ex, std::string& why) {
  const unsigned seq = nlh->nlmsg_seq;
  if (mnl_socket_sendto(sock, nlh, nlh->nlmsg_len) < 0) {
    why = std::string("netlink send failed: ") + std::strerror(errno);
    return false;
  }
  const unsigned portid = mnl_socket_get_portid(sock);
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  mnl_cb_t ctl[NLMSG_MIN_TYPE] = {};
  ctl[NLMSG_ERROR] = on_error;
  for (;;) {
    const ssize_t n = mnl_socket_recvfrom(sock, buf.data(), buf.size());
    if (n < 0) {
      why = std::string("netlink receive failed: ") + std::strerror(errno);
      return false;
    }
    const int rc = mnl_cb_run2(buf.data(), std::size_t(n), seq, portid, cb, &ex, ctl, NLMSG_MIN_TYPE);
    if (rc == MNL_CB_ERROR) {
      if (ex.error == 0) ex.error = errno != 0 ? errno : EPROTO;
      return true;
    }
    if (rc == MNL_CB_STOP) return true;
    // MNL_CB_OK: a GET reply came without NLMSG_DONE (it is not a dump); the answer is in.
    if (ex.replied) return true;
  }
}

nlmsghdr* put_header(char* buf, std::uint16_t type, std::uint8_t cmd, std::uint8_t version, bool ack) {
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = type;
  nlh->nlmsg_flags = NLM_F_REQUEST | (ack ? NLM_F_ACK : 0);
  // A fresh sequence number per request, so a late message of an earlier request on the
  // same socket can never be taken for this one's answer.
  static std::atomic<unsigned> next_seq{unsigned(time(nullptr))};
  nlh->nlmsg_seq = next_seq.fetch_add(1, std::memory_order_relaxed);
  auto* genl = static_cast<genlmsghdr*>(mnl_nlmsg_put_extra_header(nlh, sizeof(genlmsghdr)));
  genl->cmd = cmd;
  genl->version = version;
  return nlh;
}

// Opens a socket with extended ACKs and resolves the ethtool family; nullptr with `why`.
Socket open_ethtool(std::uint16_t& family, std::string& why) {
  Socket sock(mnl_socket_open(NETLINK_GENERIC));
  if (!sock) {
    why = std::string("cannot open a generic netlink socket: ") + std::strerror(errno);
    return nullptr;
  }
  if (mnl_socket_bind(sock.get(), 0, MNL_SOCKET_AUTOPID) < 0) {
    why = std::string("cannot bind a generic netlink socket: ") + std::strerror(errno);
    return nullptr;
  }
  int one = 1;
  // Best effort: without it the reason is just the errno.
  (void)mnl_socket_setsockopt(sock.get(), NETLINK_EXT_ACK, &one, sizeof(one));
  (void)mnl_socket_setsockopt(sock.get(), NETLINK_CAP_ACK, &one, sizeof(one));

  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  // No ACK asked: the reply is the answer, and no ACK is left queued for the next request.
  nlmsghdr* nlh = put_header(buf.data(), GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 1, false);
  mnl_attr_put_strz(nlh, CTRL_ATTR_FAMILY_NAME, ETHTOOL_GENL_NAME);
  Exchange ex;
  if (!transact(sock.get(), nlh, on_family, ex, why)) return nullptr;
  if (ex.family == 0) {
    why = "this kernel has no ethtool netlink interface (" + std::string(std::strerror(ex.error ? ex.error : ENOENT)) +
          "); Linux 5.6 or newer is needed for NIC queues and coalescing";
    return nullptr;
  }
  family = ex.family;
  return sock;
}

void put_dev_header(nlmsghdr* nlh, std::uint16_t header_attr, const std::string& ifname) {
  nlattr* nest = mnl_attr_nest_start(nlh, header_attr);
  nest->nla_type |= NLA_F_NESTED;  // the ethtool policy parses it as a strict nest
  mnl_attr_put_strz(nlh, ETHTOOL_A_HEADER_DEV_NAME, ifname.c_str());
  mnl_attr_nest_end(nlh, nest);
}

std::string describe(const Exchange& ex, const std::string& ifname, const char* what) {
  std::string reason = std::string(what) + " on " + ifname + ": " + std::strerror(ex.error);
  if (!ex.extack.empty()) reason += " (" + ex.extack + ")";
  return reason;
}

// One GET of the param's message; reads `attr` (the value or its *_MAX).
Result<std::uint32_t, EthtoolError> get(const std::string& ifname, const ParamInfo& p, std::uint16_t attr,
                                        std::string& why) {
  if (if_nametoindex(ifname.c_str()) == 0) {
    why = "no interface " + ifname + " in this network namespace";
    return make_error(EthtoolError::missing, why);
  }
  std::uint16_t family = 0;
  Socket sock = open_ethtool(family, why);
  if (!sock) return make_error(EthtoolError::refused, why);
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  const std::uint8_t cmd = p.channels ? ETHTOOL_MSG_CHANNELS_GET : ETHTOOL_MSG_COALESCE_GET;
  nlmsghdr* nlh = put_header(buf.data(), family, cmd, ETHTOOL_GENL_VERSION, false);
  put_dev_header(nlh, p.channels ? std::uint16_t(ETHTOOL_A_CHANNELS_HEADER) : std::uint16_t(ETHTOOL_A_COALESCE_HEADER),
                 ifname);
  Exchange ex;
  ex.param = &p;
  ex.want_attr = attr;
  if (!transact(sock.get(), nlh, on_reply, ex, why)) return make_error(EthtoolError::refused, why);
  if (ex.error != 0) {
    why = describe(ex, ifname, p.channels ? "reading queue counts" : "reading coalescing");
    if (ex.error == EOPNOTSUPP || ex.error == ENODEV) return make_error(EthtoolError::missing, why);
    return make_error(EthtoolError::refused, why);
  }
  if (!ex.value) {
    why = ifname + " does not report " + (p.channels ? "a " : "") + p.name +
          (p.channels ? " queue count" : " coalescing") + " (n/a in ethtool)";
    return make_error(EthtoolError::missing, why);
  }
  return *ex.value;
}

}  // namespace

const char* to_string(EthtoolParam param) noexcept {
  return info(param).name;
}

std::optional<EthtoolParam> ethtool_param_from_string(const std::string& name) {
  for (const auto& p : kParams) {
    if (name == p.name) return p.param;
  }
  return std::nullopt;
}

Result<std::uint32_t, EthtoolError> ethtool_read(const std::string& ifname, EthtoolParam param, std::string& why) {
  const ParamInfo& p = info(param);
  return get(ifname, p, p.attr, why);
}

Result<std::uint32_t, EthtoolError> ethtool_read_max(const std::string& ifname, EthtoolParam param, std::string& why) {
  const ParamInfo& p = info(param);
  if (p.max == 0) {
    why = std::string(p.name) + " has no maximum";
    return make_error(EthtoolError::missing, why);
  }
  return get(ifname, p, p.max, why);
}

Result<Ok, EthtoolError> ethtool_write(const std::string& ifname, EthtoolParam param, std::uint32_t value,
                                       std::string& why) {
  const ParamInfo& p = info(param);
  if (if_nametoindex(ifname.c_str()) == 0) {
    why = "no interface " + ifname + " in this network namespace";
    return make_error(EthtoolError::missing, why);
  }
  std::uint16_t family = 0;
  Socket sock = open_ethtool(family, why);
  if (!sock) return make_error(EthtoolError::refused, why);
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  const std::uint8_t cmd = p.channels ? ETHTOOL_MSG_CHANNELS_SET : ETHTOOL_MSG_COALESCE_SET;
  nlmsghdr* nlh = put_header(buf.data(), family, cmd, ETHTOOL_GENL_VERSION, true);
  put_dev_header(nlh, p.channels ? std::uint16_t(ETHTOOL_A_CHANNELS_HEADER) : std::uint16_t(ETHTOOL_A_COALESCE_HEADER),
                 ifname);
  if (p.u8) {
    mnl_attr_put_u8(nlh, p.attr, std::uint8_t(value != 0));
  } else {
    mnl_attr_put_u32(nlh, p.attr, value);
  }
  Exchange ex;
  ex.param = &p;
  if (!transact(sock.get(), nlh, on_reply, ex, why)) return make_error(EthtoolError::refused, why);
  if (ex.error != 0) {
    why = describe(ex, ifname, p.channels ? "setting queue counts" : "setting coalescing");
    if (ex.error == ENODEV) return make_error(EthtoolError::missing, why);
    return make_error(EthtoolError::refused, why);
  }
  return Ok{};
}

}  // namespace axon::tuning
