#include "fetch/aws_credentials.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "fetch/error.h"
#include "fetch/log.h"

namespace nls {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The whole file, or the errno of the failure in `*err`.
std::optional<std::string> ReadText(const std::string& file, int* err) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *err = errno;
    return std::nullopt;
  }
  std::string text;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) != 0) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      *err = errno;
      ::close(fd);
      return std::nullopt;
    }
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return text;
}

// $HOME, else the home directory of the user running us (root's under systemd without HOME).
std::string HomeDir() {
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') return home;
  const struct passwd* pw = ::getpwuid(::getuid());
  return pw != nullptr && pw->pw_dir != nullptr ? pw->pw_dir : "";
}

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::string(v) : std::string();
}

}  // namespace

std::optional<AwsCredentials> ParseAwsCredentialsFile(std::string_view text,
                                                      std::string_view profile,
                                                      std::string_view origin) {
  std::optional<AwsCredentials> found;
  bool in_profile = false;
  size_t line_no = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = Trim(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++line_no;
    if (line.empty() || line.front() == '#' || line.front() == ';') continue;
    const std::string where = std::string(origin) + ":" + std::to_string(line_no);
    // Errors name the line, never its text: it may hold a secret.
    if (line.front() == '[') {
      if (line.back() != ']') throw FormatError(where + ": a section header without ']'");
      in_profile = Trim(line.substr(1, line.size() - 2)) == profile;
      if (in_profile && !found) found.emplace();
      continue;
    }
    if (!in_profile) continue;  // other profiles' lines are their owners' business
    size_t eq = line.find('=');
    if (eq == std::string_view::npos) {
      throw FormatError(where + ": expected 'key = value' in profile " + Quoted(profile));
    }
    const std::string key = Lower(Trim(line.substr(0, eq)));
    const std::string value(Trim(line.substr(eq + 1)));
    if (key == "aws_access_key_id") {
      found->access_key_id = value;
    } else if (key == "aws_secret_access_key") {
      found->secret_access_key = value;
    } else if (key == "aws_session_token") {
      found->session_token = value;
    }
  }
  if (found) {
    if (found->access_key_id.empty() || found->secret_access_key.empty()) {
      throw FormatError(std::string(origin) + ": profile " + Quoted(profile) +
                        " needs aws_access_key_id and aws_secret_access_key");
    }
    found->source = std::string(origin) + " [" + std::string(profile) + "]";
  }
  return found;
}

std::optional<AwsCredentials> FindAwsCredentials(std::string_view profile) {
  if (profile.empty()) {
    AwsCredentials env;
    env.access_key_id = Env("AWS_ACCESS_KEY_ID");
    env.secret_access_key = Env("AWS_SECRET_ACCESS_KEY");
    env.session_token = Env("AWS_SESSION_TOKEN");
    env.source = "environment (AWS_ACCESS_KEY_ID)";
    if (!env.access_key_id.empty() && !env.secret_access_key.empty()) return env;
  }
  std::string file = Env("AWS_SHARED_CREDENTIALS_FILE");
  if (file.empty()) file = HomeDir() + "/.aws/credentials";
  // The AWS SDK for C++ (Nix's) looks at AWS_DEFAULT_PROFILE, then AWS_PROFILE.
  std::string wanted(profile);
  if (wanted.empty()) wanted = Env("AWS_DEFAULT_PROFILE");
  if (wanted.empty()) wanted = Env("AWS_PROFILE");
  if (wanted.empty()) wanted = "default";
  int err = 0;
  const std::optional<std::string> text = ReadText(file, &err);
  if (!text) {
    if (profile.empty()) return std::nullopt;
    throw ConfigError("AWS profile " + Quoted(profile) + ": cannot read " + file + ": " +
                      std::strerror(err));
  }
  auto creds = ParseAwsCredentialsFile(*text, wanted, file);
  if (!creds && !profile.empty()) {
    throw ConfigError("AWS profile " + Quoted(profile) + " is not in " + file);
  }
  if (creds) {
    creds->file = file;
    creds->profile = wanted;
  }
  return creds;
}

std::optional<AwsCredentialsProvider::FileId> AwsCredentialsProvider::Identify(
    const std::string& file) {
  struct stat st;
  if (::stat(file.c_str(), &st) != 0) return std::nullopt;
  return FileId{static_cast<unsigned long long>(st.st_dev),
                static_cast<unsigned long long>(st.st_ino),
                static_cast<unsigned long long>(st.st_size),
                static_cast<long long>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec};
}

std::unique_ptr<AwsCredentialsProvider> AwsCredentialsProvider::Create(
    std::string_view profile, std::chrono::steady_clock::duration recheck) {
  auto creds = FindAwsCredentials(profile);
  if (!creds) return nullptr;
  std::unique_ptr<AwsCredentialsProvider> p(new AwsCredentialsProvider());
  p->recheck_ = recheck;
  if (!creds->file.empty()) p->file_id_ = Identify(creds->file);
  p->current_ = std::make_shared<const AwsCredentials>(std::move(*creds));
  p->next_check_ = std::chrono::steady_clock::now() + recheck;
  return p;
}

std::shared_ptr<const AwsCredentials> AwsCredentialsProvider::Current() {
  std::lock_guard lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  if (current_->file.empty() || now < next_check_) return current_;
  next_check_ = now + recheck_;
  const std::string file = current_->file;
  const auto id = Identify(file);
  if (id == file_id_) return current_;
  file_id_ = id;
  try {
    int err = 0;
    const std::optional<std::string> text = ReadText(file, &err);
    auto fresh = text ? ParseAwsCredentialsFile(*text, current_->profile, file) : std::nullopt;
    if (!fresh) {
      NLS_LOG(kWarn) << "AWS credentials: " << file
                     << (text ? " has no profile " + current_->profile
                              : std::string(" cannot be read (") + std::strerror(err) + ")")
                     << " any more; signing with the previous keys";
      return current_;
    }
    fresh->file = file;
    fresh->profile = current_->profile;
    NLS_LOG(kInfo) << "AWS credentials: " << file << " changed; signing with its profile "
                   << current_->profile << " from now on";
    current_ = std::make_shared<const AwsCredentials>(std::move(*fresh));
  } catch (const Error& e) {
    NLS_LOG(kWarn) << "AWS credentials: " << e.what() << "; signing with the previous keys";
  }
  return current_;
}

}  // namespace nls
