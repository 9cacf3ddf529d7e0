// AWS credentials for S3 binary caches (Nix's `s3://BUCKET?...` substituters), found the way the
// AWS SDKs' default chain starts: the environment, then the shared credentials file. Requests are
// then signed with AWS Signature Version 4 by libcurl (CURLOPT_AWS_SIGV4); nothing here signs.
//
// Not supported (documented in docs/operations.md): instance metadata (IMDS), web identity
// (EKS IRSA), SSO and `credential_process`. Credentials from the environment are read once;
// credentials from the file follow it (AwsCredentialsProvider).
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace nls {

struct AwsCredentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // empty: long-term keys
  std::string source;         // where they came from, for log lines ("environment", "FILE [P]")
  std::string file;           // the shared credentials file they came from; empty: environment
  std::string profile;        // the profile of `file`
};

// Parses the text of an AWS shared credentials file (INI: `[PROFILE]` sections of
// `key = value` lines; lines starting with `#` or `;` are comments; keys are case-insensitive)
// and returns profile `profile`'s `aws_access_key_id`, `aws_secret_access_key` and optional
// `aws_session_token`. nullopt when the file has no such section. Throws FormatError (naming
// `origin` and the line number, never the line's text) for a section header without `]`, for a
// line of `profile` that is not `key = value`, and when `profile` lacks the key id or the
// secret. Other profiles' lines are not looked at.
std::optional<AwsCredentials> ParseAwsCredentialsFile(std::string_view text,
                                                      std::string_view profile,
                                                      std::string_view origin);

// The credentials for an S3 substituter. With `profile` empty: $AWS_ACCESS_KEY_ID and
// $AWS_SECRET_ACCESS_KEY (and $AWS_SESSION_TOKEN) when both are set, else profile
// $AWS_DEFAULT_PROFILE, else $AWS_PROFILE, else "default" of the shared credentials file
// ($AWS_SHARED_CREDENTIALS_FILE, default ~/.aws/credentials; ~ is $HOME, else the user's home
// directory from the password database) when it exists and has that profile, else nullopt (requests
// go unsigned, as to a public bucket). With `profile` given (the URL's `profile=`): only that
// profile of the file; ConfigError when the file or the profile is missing. FormatError for a
// malformed file.
std::optional<AwsCredentials> FindAwsCredentials(std::string_view profile);

// What one S3 request is signed with.
struct S3Signing {
  std::string region;  // e.g. "us-east-1"
  std::shared_ptr<const AwsCredentials> credentials;
};

// The credentials an S3 substituter signs with, kept current: when they came from the shared
// credentials file, Current() looks at the file again (stat, at most every `recheck` period) and
// re-reads it when it changed (inode, size or mtime: a rotated Kubernetes Secret, a sidecar
// refreshing session tokens). A file that is then missing or malformed, or lacks the profile,
// keeps the previous credentials, with a warning in the log. Thread-safe.
class AwsCredentialsProvider {
 public:
  // FindAwsCredentials(profile) (same errors); nullptr when it finds nothing.
  static std::unique_ptr<AwsCredentialsProvider> Create(
      std::string_view profile,
      std::chrono::steady_clock::duration recheck = std::chrono::seconds(10));

  std::shared_ptr<const AwsCredentials> Current();

 private:
  struct FileId {
    unsigned long long dev = 0, ino = 0, size = 0;
    long long mtime_ns = 0;
    bool operator==(const FileId&) const = default;
  };
  static std::optional<FileId> Identify(const std::string& file);

  std::chrono::steady_clock::duration recheck_;
  std::mutex mu_;
  std::shared_ptr<const AwsCredentials> current_;
  std::optional<FileId> file_id_;
  std::chrono::steady_clock::time_point next_check_;
};

}  // namespace nls
