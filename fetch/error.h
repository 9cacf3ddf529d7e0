// Error types shared by every part of nix-lazy-store.
//
// Errors are reported with exceptions. Every message is complete on its own: it names what was
// being processed (store path, substituter, file) and the cause, so it can go to a log line as is.
#pragma once

#include <stdexcept>
#include <string>

namespace nls {

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
