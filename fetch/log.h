// A tiny leveled logger writing whole lines to stderr. Thread-safe: every line is written with a
// single write(2) under a mutex, so lines from different threads never interleave.
//
// Usage:
//   NLS_LOG(kWarn) << "fetching " << path << " from " << url << ": " << cause;
//   nls::LogF(nls::LogLevel::kInfo, "fetched %s in %.1f s", path.c_str(), secs);
// A line is emitted only when its level is at most the global level (kError < kWarn < kInfo <
// kDebug); the arguments of a suppressed NLS_LOG line are not evaluated. Lines look like
//   "2026-11-25 12:00:00.123 nix-lazy-store[pid] WARN: message".
#pragma once

#include <optional>
#include <sstream>
#include <string>
#include <string_view>

namespace nls {

enum class LogLevel { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

// The global level; default kInfo (or NLS_LOG_LEVEL from the environment at first use).
void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
inline bool LogEnabled(LogLevel level) {
  return static_cast<int>(level) <= static_cast<int>(GetLogLevel());
}

// "error", "warn", "info", "debug" (case-insensitive, also "warning"); nullopt otherwise.
std::optional<LogLevel> ParseLogLevel(std::string_view text);

// Program name shown in each line (default "nix-lazy-store").
void SetLogProgramName(std::string_view name);

// Writes one line (a trailing newline is added) if `level` is enabled.
void LogLine(LogLevel level, std::string_view message);

// printf-style.
void LogF(LogLevel level, const char* format, ...) __attribute__((format(printf, 2, 3)));

// Collects one line and writes it when destroyed.
class LogMessage {
 public:
  explicit LogMessage(LogLevel level) : level_(level) {}
  ~LogMessage() { LogLine(level_, stream_.str()); }
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;
  std::ostream& stream() { return stream_; }

 private:
  LogLevel level_;
  std::ostringstream stream_;
};

// Lets NLS_LOG be one expression: `&` binds looser than `<<`.
struct LogVoidify {
  void operator&(std::ostream&) {}
};

}  // namespace nls

// NLS_LOG(kWarn) << ...;  the level is a LogLevel enumerator name. Safe inside an unbraced
// if/else (glog's "voidify" form, no dangling else).
#define NLS_LOG(level)                       \
  !::nls::LogEnabled(::nls::LogLevel::level) \
      ? (void)0                              \
      : ::nls::LogVoidify() & ::nls::LogMessage(::nls::LogLevel::level).stream()
