// The REST API's transport: Boost.Beast HTTP/1.1 over Boost.Asio, HTTPS on the TCP listener
// and plain HTTP on the unix socket. All I/O is asynchronous on a small thread pool, so an
// idle or slow client costs a descriptor and a few KiB, never a thread; every operation has
// a deadline (TLS handshake, the whole request head, the body, the response write).
//
// It parses each request (head limit, strict framing), hands it to the Pipeline, reads the
// body of an admitted request, and writes the response. No Beast or Asio type leaves
// transport.cc, so only that file pays their compile time.
#pragma once

#include <openssl/ssl.h>

#include <cstdint>
#include <memory>

#include "axon/common/result.h"
#include "axon/controlplane/api_server.h"

#include "api/pipeline.h"

namespace axon::controlplane::api {

class Transport {
 public:
  // Serves the listening sockets (already bound; -1 = none) until stop(). `tls` (owned by
  // the caller, outliving the transport) is used for every TCP connection.
  static Result<std::unique_ptr<Transport>, ApiServerError> start(const ApiServerOptions& options, Pipeline& pipeline,
                                                                  SSL_CTX* tls, int tcp_fd, int unix_fd);
  ~Transport();
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  // Stops accepting, closes every connection and joins the threads. Idempotent.
  void stop();

  struct Impl;

 private:
  explicit Transport(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace axon::controlplane::api
