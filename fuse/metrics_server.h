// A minimal HTTP/1.0 responder for Prometheus scrapes: GET /metrics answers the text exposition
// format, anything else 404 (405 for other methods). One connection at a time, each with a 2 s
// I/O timeout and a bounded request size, so a slow or hostile client cannot stall it for long.
#pragma once

#include <functional>
#include <string>
#include <thread>

#include "fuse/cli.h"

namespace nls {

class MetricsServer {
 public:
  // Binds and listens (throws ConfigError naming the address and the cause); serves from a
  // thread. `body` is called for each scrape.
  MetricsServer(const ListenAddress& address, std::function<std::string()> body);
  ~MetricsServer();  // stops the thread, closes the socket
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  uint16_t port() const { return port_; }

 private:
  void Serve();
  void HandleConnection(int fd);

  std::function<std::string()> body_;
  int listen_fd_ = -1;
  int stop_pipe_[2] = {-1, -1};
  uint16_t port_ = 0;
  std::thread thread_;
};

// Sends `state` (e.g. "READY=1") to systemd's $NOTIFY_SOCKET, if set. Returns false (and logs)
// on failure; true when sent or when there is no NOTIFY_SOCKET.
bool NotifySystemd(const std::string& state);

}  // namespace nls
