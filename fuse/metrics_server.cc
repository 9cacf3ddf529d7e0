#include "fuse/metrics_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>

#include "fetch/error.h"
#include "fetch/log.h"

namespace nls {
namespace {

void SetTimeouts(int fd, int seconds) {
  struct timeval tv {};
  tv.tv_sec = seconds;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

bool WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

}  // namespace

MetricsServer::MetricsServer(const ListenAddress& address, std::function<std::string()> body)
    : body_(std::move(body)) {
  const std::string where = address.host + ":" + std::to_string(address.port);
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) {
    throw ConfigError("--metrics-listen " + where + ": socket: " + std::strerror(errno));
  }
  int one = 1;
  setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(address.port);
  if (inet_pton(AF_INET, address.host.c_str(), &sa.sin_addr) != 1) {
    ::close(listen_fd_);
    throw ConfigError("--metrics-listen " + where + ": bad IPv4 address");
  }
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0 ||
      ::listen(listen_fd_, 16) != 0) {
    const int err = errno;
    ::close(listen_fd_);
    throw ConfigError("--metrics-listen " + where + ": " + std::strerror(err));
  }
  socklen_t len = sizeof(sa);
  getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&sa), &len);
  port_ = ntohs(sa.sin_port);
  if (::pipe2(stop_pipe_, O_CLOEXEC) != 0) {
    const int err = errno;
    ::close(listen_fd_);
    throw ConfigError("--metrics-listen " + where + ": pipe: " + std::strerror(err));
  }
  thread_ = std::thread([this] { Serve(); });
}

MetricsServer::~MetricsServer() {
  if (stop_pipe_[1] >= 0) {
    char c = 0;
    (void)!::write(stop_pipe_[1], &c, 1);
  }
  if (thread_.joinable()) thread_.join();
  for (int fd : {listen_fd_, stop_pipe_[0], stop_pipe_[1]}) {
    if (fd >= 0) ::close(fd);
  }
}

void MetricsServer::Serve() {
  while (true) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
    int rc = ::poll(fds, 2, -1);
    if (rc < 0) {
      if (errno == EINTR) continue;
      NLS_LOG(kError) << "metrics server: poll: " << std::strerror(errno);
      return;
    }
    if (fds[1].revents) return;
    if (!(fds[0].revents & POLLIN)) continue;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    HandleConnection(fd);
    ::close(fd);
  }
}

void MetricsServer::HandleConnection(int fd) {
  SetTimeouts(fd, 2);
  std::string request;
  char buf[1024];
  // Read the request head (up to the blank line), at most 8 KiB.
  while (request.size() < 8192 && request.find("\r\n\r\n") == std::string::npos &&
         request.find("\n\n") == std::string::npos) {
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    request.append(buf, static_cast<size_t>(n));
  }
  const auto line_end = request.find_first_of("\r\n");
  const std::string line = request.substr(0, line_end);
  std::string status = "404 Not Found";
  std::string body = "not found\n";
  std::string type = "text/plain";
  const bool get = line.rfind("GET ", 0) == 0;
  const bool head = line.rfind("HEAD ", 0) == 0;
  if (!get && !head) {
    status = "405 Method Not Allowed";
    body = "method not allowed\n";
  } else {
    std::string target = line.substr(get ? 4 : 5);
    target = target.substr(0, target.find(' '));
    if (target == "/metrics" || target.rfind("/metrics?", 0) == 0) {
      status = "200 OK";
      type = "text/plain; version=0.0.4; charset=utf-8";
      try {
        body = body_();
      } catch (const std::exception& e) {
        status = "500 Internal Server Error";
        body = std::string(e.what()) + "\n";
      }
    }
  }
  std::string response = "HTTP/1.0 " + status + "\r\nContent-Type: " + type +
                         "\r\nContent-Length: " + std::to_string(body.size()) +
                         "\r\nConnection: close\r\n\r\n";
  if (!head) response += body;
  WriteAll(fd, response);
}

bool NotifySystemd(const std::string& state) {
  const char* socket_path = std::getenv("NOTIFY_SOCKET");
  if (!socket_path || !*socket_path) return true;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  const std::string path(socket_path);
  if (path.size() >= sizeof(sa.sun_path) || (path[0] != '/' && path[0] != '@')) {
    NLS_LOG(kWarn) << "NOTIFY_SOCKET " << Quoted(path) << " is not a usable socket address";
    return false;
  }
  std::memcpy(sa.sun_path, path.data(), path.size());
  if (path[0] == '@') sa.sun_path[0] = '\0';  // abstract namespace
  const socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    NLS_LOG(kWarn) << "notifying systemd: socket: " << std::strerror(errno);
    return false;
  }
  ssize_t n =
      ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&sa), len);
  const int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(state.size())) {
    NLS_LOG(kWarn) << "notifying systemd at " << Quoted(path) << ": " << std::strerror(err);
    return false;
  }
  return true;
}

}  // namespace nls
