// A small OTLP/HTTP receiver run by the tests on loopback (Debian packages no OpenTelemetry
// collector): it accepts POSTs, keeps each request's target, headers and body, and answers
// 200 "{}" — or, as a blackhole, accepts connections and never reads or answers.
#pragma once

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace axon::controlplane::otlp_test {

struct ReceivedPost {
  std::string request_line;
  std::map<std::string, std::string> headers;  // names lowercased
  std::string body;
};

class OtlpReceiver {
 public:
  explicit OtlpReceiver(bool blackhole = false) : blackhole_(blackhole) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    listen(fd_, 64);
    socklen_t len = sizeof a;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~OtlpReceiver() {
    stop_ = true;
    thread_.join();
    for (int fd : held_) close(fd);
    close(fd_);
  }
  std::uint16_t port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1/traces"; }
  std::vector<ReceivedPost> posts() {
    std::lock_guard lock(mutex_);
    return posts_;
  }
  std::size_t connections() const { return connections_; }

 private:
  void serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      const int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      ++connections_;
      if (blackhole_) {
        held_.push_back(c);  // never read, never answered
        continue;
      }
      handle(c);
      close(c);
    }
  }

  void handle(int c) {
    std::string raw;
    char buf[65536];
    std::size_t header_end = std::string::npos, length = 0;
    while (!stop_) {
      pollfd p{c, POLLIN, 0};
      if (::poll(&p, 1, 2000) <= 0) return;
      const ssize_t n = recv(c, buf, sizeof buf, 0);
      if (n <= 0) return;
      raw.append(buf, std::size_t(n));
      if (header_end == std::string::npos && (header_end = raw.find("\r\n\r\n")) != std::string::npos) {
        ReceivedPost post = parse_head(raw.substr(0, header_end));
        length = std::stoul(post.headers.count("content-length") ? post.headers["content-length"] : "0");
        pending_ = post;
      }
      if (header_end != std::string::npos && raw.size() >= header_end + 4 + length) break;
    }
    if (header_end == std::string::npos) return;
    pending_.body = raw.substr(header_end + 4, length);
    {
      std::lock_guard lock(mutex_);
      posts_.push_back(pending_);
    }
    const std::string reply =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
    (void)send(c, reply.data(), reply.size(), MSG_NOSIGNAL);
  }

  static ReceivedPost parse_head(const std::string& head) {
    ReceivedPost post;
    std::size_t at = head.find("\r\n");
    post.request_line = head.substr(0, at);
    while (at != std::string::npos && at < head.size()) {
      const std::size_t next = head.find("\r\n", at + 2);
      const std::string line = head.substr(at + 2, next == std::string::npos ? std::string::npos : next - at - 2);
      const std::size_t colon = line.find(':');
      if (colon != std::string::npos) {
        std::string name = line.substr(0, colon);
        std::transform(name.begin(), name.end(), name.begin(), [](unsigned char ch) { return char(std::tolower(ch)); });
        std::string value = line.substr(colon + 1);
        value.erase(0, value.find_first_not_of(' '));
        post.headers[name] = value;
      }
      at = next;
    }
    return post;
  }

  bool blackhole_;
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<std::size_t> connections_{0};
  std::vector<int> held_;
  ReceivedPost pending_;
  std::mutex mutex_;
  std::vector<ReceivedPost> posts_;
  std::thread thread_;
};

}  // namespace axon::controlplane::otlp_test

#include <nlohmann/json.hpp>

namespace axon::controlplane::otlp_test {

inline bool is_hex(const std::string& s, std::size_t size) {
  return s.size() == size && s.find_first_not_of("0123456789abcdef") == std::string::npos &&
         s != std::string(size, '0');
}
inline bool is_decimal(const nlohmann::json& v) {
  return v.is_string() && !v.get<std::string>().empty() &&
         v.get<std::string>().find_first_not_of("0123456789") == std::string::npos;
}

// Checks an ExportTraceServiceRequest against the OTLP protobuf JSON mapping, field by field
// and type by type; every problem is appended to `problems`. Returns the spans.
inline std::vector<nlohmann::json> otlp_spans(const nlohmann::json& body, const std::string& service,
                                              std::vector<std::string>& problems) {
  std::vector<nlohmann::json> spans;
  auto check = [&](bool ok, const std::string& what) {
    if (!ok) problems.push_back(what);
    return ok;
  };
  if (!check(body.is_object() && body.size() == 1 && body.contains("resourceSpans") &&
                 body["resourceSpans"].is_array() && !body["resourceSpans"].empty(),
             "the body is {\"resourceSpans\": [...]}")) {
    return spans;
  }
  for (const auto& rs : body["resourceSpans"]) {
    bool named = false;
    for (const auto& a : rs["resource"]["attributes"]) {
      named |= a.value("key", "") == "service.name" && a["value"].value("stringValue", "") == service;
    }
    check(named, "resource.attributes has service.name = " + service);
    if (!check(rs["scopeSpans"].is_array() && !rs["scopeSpans"].empty(), "scopeSpans is a non-empty array")) continue;
    for (const auto& ss : rs["scopeSpans"]) {
      check(ss["scope"]["name"].is_string() && !ss["scope"]["name"].get<std::string>().empty(), "scope.name");
      for (const auto& s : ss["spans"]) {
        const std::string where = "span " + s.dump() + ": ";
        check(s["traceId"].is_string() && is_hex(s["traceId"].get<std::string>(), 32), where + "traceId");
        check(s["spanId"].is_string() && is_hex(s["spanId"].get<std::string>(), 16), where + "spanId");
        check(!s.contains("parentSpanId") ||
                  (s["parentSpanId"].is_string() && is_hex(s["parentSpanId"].get<std::string>(), 16)),
              where + "parentSpanId");
        check(s["name"].is_string() && !s["name"].get<std::string>().empty(), where + "name");
        check(s["kind"].is_number_integer() && s["kind"].get<int>() >= 0 && s["kind"].get<int>() <= 5,
              where + "kind is the integer enum");
        if (check(is_decimal(s["startTimeUnixNano"]) && is_decimal(s["endTimeUnixNano"]),
                  where + "times are decimal strings")) {
          check(std::stoull(s["startTimeUnixNano"].get<std::string>()) <=
                    std::stoull(s["endTimeUnixNano"].get<std::string>()),
                where + "start <= end");
        }
        for (const auto& a : s["attributes"]) {
          const auto& v = a["value"];
          const bool one = v.is_object() && v.size() == 1;
          const bool typed = (v.contains("stringValue") && v["stringValue"].is_string()) ||
                             (v.contains("intValue") && is_decimal(v["intValue"]));
          check(a["key"].is_string() && one && typed, where + "attribute " + a.dump());
        }
        check(s["status"].is_object() && (!s["status"].contains("code") || s["status"]["code"].is_number_integer()),
              where + "status");
        spans.push_back(s);
      }
    }
  }
  return spans;
}

}  // namespace axon::controlplane::otlp_test
