// Error types shared by every part of nix-lazy-store.
//
// Errors are reported with exceptions. Every message is complete on its own: it names what was
// being processed (store path, substituter, file) and the cause, so it can go to a log line as is.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>

namespace nls {

// `text` in single quotes for an error message: bytes outside printable ASCII (and '\\') are
// escaped as \xNN, and text longer than `max_chars` is cut with its full length noted. Input may
// be hostile (a fetched narinfo), so messages stay one printable line of bounded size.
inline std::string Quoted(std::string_view text, size_t max_chars = 200) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "'";
  const std::string_view shown = text.substr(0, max_chars);
  for (char ch : shown) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out.push_back(ch);
    } else {
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    }
  }
  out += "'";
  if (shown.size() < text.size()) {
    out += "... (" + std::to_string(text.size()) + " bytes)";
  }
  return out;
}

// Base of all errors thrown by this project.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Input that does not follow a Nix format (narinfo, NAR, listing, store path, hash, key, ...).
class FormatError : public Error {
 public:
  using Error::Error;
};

// Data whose hash or size is not the one that was promised (NarHash, NarSize, FileSize).
class IntegrityError : public Error {
 public:
  using Error::Error;
};

// A narinfo with no valid signature from a trusted key.
class SignatureError : public Error {
 public:
  using Error::Error;
};

// A failure that may go away when retried (network, HTTP 5xx/429/408, timeouts).
class TransientError : public Error {
 public:
  using Error::Error;
};

// A store path that no configured substituter has.
class NotFoundError : public Error {
 public:
  using Error::Error;
};

// Invalid configuration or command line.
class ConfigError : public Error {
 public:
  using Error::Error;
};

// The operation was cancelled (shutdown).
class CancelledError : public Error {
 public:
  using Error::Error;
};

}  // namespace nls
