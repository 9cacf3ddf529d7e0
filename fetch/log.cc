#include "fetch/log.h"

#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <string>
#include <vector>

namespace nls {
namespace {

std::mutex& LogMutex() {
  static std::mutex mu;
  return mu;
}

std::string& ProgramName() {
  static std::string name = "nix-lazy-store";
  return name;
}

int InitialLevel() {
  const char* env = std::getenv("NLS_LOG_LEVEL");
  if (env != nullptr) {
    if (auto level = ParseLogLevel(env)) return static_cast<int>(*level);
  }
  return static_cast<int>(LogLevel::kInfo);
}

std::atomic<int>& Level() {
  static std::atomic<int> level{InitialLevel()};
  return level;
}

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kError:
      return "ERROR";
    case LogLevel::kWarn:
      return "WARN";
    case LogLevel::kInfo:
      return "INFO";
    case LogLevel::kDebug:
      return "DEBUG";
  }
  return "?";
}

}  // namespace

void SetLogLevel(LogLevel level) { Level().store(static_cast<int>(level)); }

LogLevel GetLogLevel() { return static_cast<LogLevel>(Level().load(std::memory_order_relaxed)); }

std::optional<LogLevel> ParseLogLevel(std::string_view text) {
  std::string lower;
  for (char c : text) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower == "error") return LogLevel::kError;
  if (lower == "warn" || lower == "warning") return LogLevel::kWarn;
  if (lower == "info") return LogLevel::kInfo;
  if (lower == "debug") return LogLevel::kDebug;
  return std::nullopt;
}

void SetLogProgramName(std::string_view name) {
  std::lock_guard<std::mutex> lock(LogMutex());
  ProgramName() = std::string(name);
}

void LogLine(LogLevel level, std::string_view message) {
  if (!LogEnabled(level)) return;
  struct timeval tv;
  gettimeofday(&tv, nullptr);
  struct tm tm;
  gmtime_r(&tv.tv_sec, &tm);
  char stamp[64];
  std::snprintf(stamp, sizeof stamp, "%04d-%02d-%02d %02d:%02d:%02d.%03d", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(tv.tv_usec / 1000));
  std::lock_guard<std::mutex> lock(LogMutex());
  std::string line;
  line.reserve(message.size() + 64);
  line += stamp;
  line += ' ';
  line += ProgramName();
  line += '[';
  line += std::to_string(getpid());
  line += "] ";
  line += LevelName(level);
  line += ": ";
  line += message;
  if (line.empty() || line.back() != '\n') line += '\n';
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n <= 0) break;  // nothing sensible to do when stderr is gone
    p += n;
    left -= static_cast<size_t>(n);
  }
}

void LogF(LogLevel level, const char* format, ...) {
  if (!LogEnabled(level)) return;
  va_list args;
  va_start(args, format);
  va_list copy;
  va_copy(copy, args);
  int n = std::vsnprintf(nullptr, 0, format, copy);
  va_end(copy);
  std::string text;
  if (n > 0) {
    std::vector<char> buf(static_cast<size_t>(n) + 1);
    std::vsnprintf(buf.data(), buf.size(), format, args);
    text.assign(buf.data(), static_cast<size_t>(n));
  }
  va_end(args);
  LogLine(level, text);
}

}  // namespace nls
