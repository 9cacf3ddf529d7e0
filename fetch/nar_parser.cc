#include "fetch/nar_parser.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "fetch/error.h"

namespace nls {
namespace {

constexpr std::string_view kMagic = "nix-archive-1";

uint64_t ReadU64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

uint64_t Padding(uint64_t len) { return (8 - (len % 8)) % 8; }

bool AllZero(std::string_view s) {
  for (char c : s)
    if (c != 0) return false;
  return true;
}

// Printable rendering of a (possibly binary, possibly long) token for error messages.
std::string Quote(std::string_view s) {
  std::string out = "'";
  size_t n = std::min<size_t>(s.size(), 64);
  for (size_t i = 0; i < n; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f || c == '\\' || c == '\'') {
      static const char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > n) out += "...";
  out += "'";
  return out;
}

}  // namespace

struct NarParser::Impl {
  enum class State {
    kMagic,
    kOpen,             // "(" of a node
    kTypeKw,           // "type"
    kTypeVal,          // "regular" | "symlink" | "directory"
    kRegTag,           // "executable" | "contents"
    kExecVal,          // "" after "executable"
    kRegTagAfterExec,  // "contents"
    kContentsLen,      // u64
    kContentsData,     // streamed
    kContentsPad,      // zero padding after the contents
    kClose,            // ")" closing a regular file or symlink node
    kSymTargetKw,      // "target"
    kSymTarget,        // the target string
    kDirTag,           // "entry" | ")"
    kEntryOpen,        // "(" of an entry
    kEntryNameKw,      // "name"
    kEntryName,        // the name
    kEntryNodeKw,      // "node"
    kEntryClose,       // ")" closing an entry
    kDone,
    kFailed,
  };

  struct DirFrame {
    size_t path_len;        // length of path for this directory
    std::string prev_name;  // last entry name seen
    bool has_prev = false;
  };

  Impl(NarSink& s, std::string_view o) : sink(s), origin(o) {}

  NarSink& sink;
  std::string origin;
  Sha256 hasher;
  State state = State::kMagic;
  uint64_t base = 0;  // offset of the current Feed's first byte
  // Token assembly.
  std::string buf;
  bool buf_complete = false;
  int str_phase = 0;  // 0: reading the length, 1: reading the padded body
  uint64_t str_len = 0;
  uint64_t tok_start = 0;
  // Node state.
  std::string path;
  std::vector<DirFrame> dirs;
  size_t open_entries = 0;
  bool executable = false;
  uint64_t remaining = 0;  // contents bytes still to come
  uint64_t pad = 0;

  [[noreturn]] void Fail(uint64_t offset, const std::string& reason) {
    state = State::kFailed;
    std::string msg = "invalid NAR";
    if (!origin.empty()) msg += " " + origin;
    msg += ": " + reason + " at byte offset " + std::to_string(offset);
    if (!path.empty()) msg += " (in '" + path + "')";
    throw FormatError(msg);
  }

  // Makes `n` bytes available in `out`, from the input directly when possible, else by
  // accumulating into buf. Returns false when the input ran out (everything was buffered).
  bool Take(const char*& p, const char* end, size_t n, std::string_view& out) {
    if (buf_complete) {
      buf.clear();
      buf_complete = false;
    }
    size_t avail = static_cast<size_t>(end - p);
    if (buf.empty() && avail >= n) {
      out = std::string_view(p, n);
      p += n;
      return true;
    }
    size_t k = std::min(n - buf.size(), avail);
    buf.append(p, k);
    p += k;
    if (buf.size() < n) return false;
    buf_complete = true;
    out = buf;
    return true;
  }

  uint64_t Pos(const char* p, const char* begin) const {
    return base + static_cast<uint64_t>(p - begin);
  }

  // Reads one str(...) token of at most `max_len` bytes (`what` names it in errors).
  bool ReadString(const char*& p, const char* begin, const char* end, uint64_t max_len,
                  const char* what, std::string_view& out) {
    if (str_phase == 0) {
      if (buf.empty() || buf_complete) tok_start = Pos(p, begin);
      std::string_view len_bytes;
      if (!Take(p, end, 8, len_bytes)) return false;
      str_len = ReadU64(len_bytes.data());
      if (str_len > max_len) {
        Fail(tok_start, std::string(what) + " of " + std::to_string(str_len) +
                            " bytes is longer than the limit of " + std::to_string(max_len));
      }
      str_phase = 1;
    }
    std::string_view body;
    if (!Take(p, end, str_len + Padding(str_len), body)) return false;
    str_phase = 0;
    if (!AllZero(body.substr(str_len))) Fail(tok_start + 8 + str_len, "non-zero padding");
    out = body.substr(0, str_len);
    return true;
  }

  void Expect(std::string_view got, std::string_view want) {
    if (got != want) {
      Fail(tok_start, "expected " + Quote(want) + ", got " + Quote(got));
    }
  }

  // Called when a node (regular, symlink or directory) has read its ")".
  void NodeClosed() { state = open_entries == 0 ? State::kDone : State::kEntryClose; }

  void CheckName(std::string_view name) {
    if (name.empty()) Fail(tok_start, "empty entry name");
    if (name == "." || name == "..") Fail(tok_start, "invalid entry name " + Quote(name));
    if (name.find('/') != std::string_view::npos) {
      Fail(tok_start, "entry name " + Quote(name) + " contains '/'");
    }
    if (name.find('\0') != std::string_view::npos) {
      Fail(tok_start, "entry name " + Quote(name) + " contains a NUL byte");
    }
    DirFrame& dir = dirs.back();
    if (dir.has_prev) {
      // std::string_view comparison is unsigned byte order (char_traits<char>::lt).
      int c = std::string_view(dir.prev_name).compare(name);
      if (c == 0) Fail(tok_start, "duplicate entry name " + Quote(name));
      if (c > 0) {
        Fail(tok_start, "entry " + Quote(name) + " is not sorted after " + Quote(dir.prev_name));
      }
    }
    dir.prev_name.assign(name);
    dir.has_prev = true;
    path.resize(dir.path_len);
    if (!path.empty()) path += '/';
    path += name;
  }

  void Feed(std::string_view bytes) {
    if (state == State::kFailed) Fail(base, "parser already failed");
    hasher.Update(bytes);
    const char* begin = bytes.data();
    const char* p = begin;
    const char* end = begin + bytes.size();
    std::string_view s;
    while (p < end) {
      switch (state) {
        case State::kMagic:
          if (!ReadString(p, begin, end, kMagic.size(), "magic", s)) break;
          if (s != kMagic) Fail(tok_start, "bad magic " + Quote(s) + " (not a NAR)");
          state = State::kOpen;
          break;
        case State::kOpen:
          if (!ReadString(p, begin, end, kMaxTagLength, "tag", s)) break;
          Expect(s, "(");
          state = State::kTypeKw;
          break;
        case State::kTypeKw:
          if (!ReadString(p, begin, end, kMaxTagLength, "tag", s)) break;
          Expect(s, "type");
          state = State::kTypeVal;
          break;
        case State::kTypeVal:
          if (!ReadString(p, begin, end, kMaxTagLength, "node type", s)) break;
          if (s == "regular") {
            executable = false;
            state = State::kRegTag;
          } else if (s == "symlink") {
            state = State::kSymTargetKw;
          } else if (s == "directory") {
            sink.CreateDirectory(path);
            dirs.push_back(DirFrame{path.size(), {}, false});
            state = State::kDirTag;
          } else {
            Fail(tok_start, "unknown node type " + Quote(s));
          }
          break;
        case State::kRegTag:
          if (!ReadString(p, begin, end, kMaxTagLength, "tag", s)) break;
          if (s == "executable") {
            state = State::kExecVal;
          } else if (s == "contents") {
            state = State::kContentsLen;
          } else {
            Fail(tok_start, "expected 'executable' or 'contents', got " + Quote(s));
          }
          break;
        case State::kExecVal:
          if (!ReadString(p, begin, end, kMaxTagLength, "executable marker", s)) break;
          if (!s.empty()) Fail(tok_start, "executable marker has non-empty value " + Quote(s));
          executable = true;
          state = State::kRegTagAfterExec;
          break;
        case State::kRegTagAfterExec:
          if (!ReadString(p, begin, end, kMaxTagLength, "tag", s)) break;
          Expect(s, "contents");
          state = State::kContentsLen;
          break;
        case State::kContentsLen: {
          if (buf.empty() || buf_complete) tok_start = Pos(p, begin);
          if (!Take(p, end, 8, s)) break;
          remaining = ReadU64(s.data());
          pad = Padding(remaining);
          sink.BeginRegular(path, executable, remaining, Pos(p, begin));
          state = State::kContentsData;
          [[fallthrough]];
        }
        case State::kContentsData:
          while (remaining > 0 && p < end) {
            size_t k = static_cast<size_t>(
                std::min<uint64_t>({remaining, static_cast<uint64_t>(end - p), kMaxDataPiece}));
            sink.RegularData(std::string_view(p, k));
            p += k;
            remaining -= k;
          }
          if (remaining > 0) break;
          state = State::kContentsPad;
          tok_start = Pos(p, begin);
          [[fallthrough]];
        case State::kContentsPad:
          if (!Take(p, end, pad, s)) break;
          if (!AllZero(s)) Fail(tok_start, "non-zero padding after file contents");
          sink.EndRegular();
          state = State::kClose;
          break;
        case State::kClose:
          if (!ReadString(p, begin, end, kMaxTagLength, "tag", s)) break;
          if (s == "executable") Fail(tok_start, "'executable' after 'contents'");
          Expect(s, ")");
          NodeClosed();
          break;
        case State::kSymTargetKw:
          if (!ReadString(p, begin, end, kMaxTagLength, "tag", s)) break;
          Expect(s, "target");
          state = State::kSymTarget;
          break;
        case State::kSymTarget:
          if (!ReadString(p, begin, end, kMaxTargetLength, "symlink target", s)) break;
          if (s.empty()) Fail(tok_start, "empty symlink target");
          if (s.find('\0') != std::string_view::npos) {
            Fail(tok_start, "symlink target " + Quote(s) + " contains a NUL byte");
          }
          sink.CreateSymlink(path, s);
          state = State::kClose;
          break;
        case State::kDirTag:
          if (!ReadString(p, begin, end, kMaxTagLength, "tag", s)) break;
          if (s == "entry") {
            state = State::kEntryOpen;
          } else if (s == ")") {
            path.resize(dirs.back().path_len);
            dirs.pop_back();
            NodeClosed();
          } else {
            Fail(tok_start, "expected 'entry' or ')', got " + Quote(s));
          }
          break;
        case State::kEntryOpen:
          if (!ReadString(p, begin, end, kMaxTagLength, "tag", s)) break;
          Expect(s, "(");
          state = State::kEntryNameKw;
          break;
        case State::kEntryNameKw:
          if (!ReadString(p, begin, end, kMaxTagLength, "tag", s)) break;
          Expect(s, "name");
          state = State::kEntryName;
          break;
        case State::kEntryName:
          if (!ReadString(p, begin, end, kMaxNameLength, "entry name", s)) break;
          CheckName(s);
          state = State::kEntryNodeKw;
          break;
        case State::kEntryNodeKw:
          if (!ReadString(p, begin, end, kMaxTagLength, "tag", s)) break;
          Expect(s, "node");
          if (dirs.size() > kMaxDepth) {
            Fail(tok_start, "nesting depth " + std::to_string(dirs.size()) +
                                " exceeds the limit of " + std::to_string(kMaxDepth));
          }
          ++open_entries;
          state = State::kOpen;
          break;
        case State::kEntryClose:
          if (!ReadString(p, begin, end, kMaxTagLength, "tag", s)) break;
          Expect(s, ")");
          --open_entries;
          path.resize(dirs.back().path_len);
          state = State::kDirTag;
          break;
        case State::kDone:
          Fail(Pos(p, begin), "data after the end of the NAR (" + std::to_string(end - p) +
                                  " more bytes in this piece)");
        case State::kFailed:
          Fail(Pos(p, begin), "parser already failed");
      }
    }
    base += bytes.size();
  }

  std::string Expecting() const {
    switch (state) {
      case State::kMagic:
        return "the magic";
      case State::kContentsData:
        return "file contents (" + std::to_string(remaining) + " more bytes)";
      case State::kDone:
        return "";
      default:
        return "a token";
    }
  }
};

NarParser::NarParser(NarSink& sink, std::string_view origin)
    : impl_(std::make_unique<Impl>(sink, origin)) {}

NarParser::~NarParser() = default;

void NarParser::Feed(std::string_view bytes) { impl_->Feed(bytes); }

uint64_t NarParser::bytes_consumed() const { return impl_->base; }

Hash NarParser::Finish(std::optional<uint64_t> expected_size, std::optional<Hash> expected_hash) {
  Impl& im = *impl_;
  if (im.state == Impl::State::kFailed) im.Fail(im.base, "parser already failed");
  if (im.state != Impl::State::kDone) {
    std::string what = im.Expecting();
    im.Fail(im.base, "truncated NAR: input ended while expecting " + what);
  }
  Hash h = im.hasher.Finish();
  std::string who = im.origin.empty() ? "NAR" : "NAR of " + im.origin;
  if (expected_size && *expected_size != im.base) {
    throw IntegrityError(who + ": NarSize mismatch: expected " + std::to_string(*expected_size) +
                         " bytes, got " + std::to_string(im.base));
  }
  if (expected_hash && !(*expected_hash == h)) {
    throw IntegrityError(who + ": NarHash mismatch: expected " + expected_hash->ToNixString() +
                         ", got " + h.ToNixString());
  }
  return h;
}

Hash ParseNar(std::string_view nar, NarSink& sink) {
  NarParser parser(sink);
  parser.Feed(nar);
  return parser.Finish();
}

}  // namespace nls
