// nar_tool: command-line access to the NAR parser, listings and decompressors (tests, benchmarks).
//
//   nar_tool hash [--decompress METHOD] [--expect-size N] [--expect-hash HASH] FILE|-
//       Parses a NAR and prints "hash <nix32 sha256>", "size <bytes>", then one line per node in
//       NAR order, tab-separated: "D\t<path>", "F\t<x|->\t<size>\t<sha256 hex of
//       contents>\t<path>", "L\t<path>\t<target>". Paths are "." for the root, "./a/b" below it.
//   nar_tool listing [--decompress METHOD] FILE|-
//       Prints the .ls JSON listing of the NAR (with narOffset), as Nix writes it.
//   nar_tool check-listing [--decompress METHOD] LISTING NAR|-
//       Exits 0 if the listing file describes the NAR exactly (sizes, executable bits, targets,
//       narOffsets), 1 (with the first difference) otherwise.
//   nar_tool decompress METHOD
//       Decompresses stdin to stdout (METHOD: none, zstd, xz, bzip2).
// Errors go to stderr with exit status 2.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "fetch/decompressor.h"
#include "fetch/error.h"
#include "fetch/hash.h"
#include "fetch/nar_listing.h"
#include "fetch/nar_parser.h"

namespace nls {
namespace {

constexpr size_t kReadSize = 1 << 20;

void WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error(std::string("write to stdout: ") + std::strerror(errno));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
}

// Reads FILE (or stdin for "-") in large pieces, optionally decompressing, into `consume`.
void ReadInput(const std::string& file, const std::string& method,
               const std::function<void(std::string_view)>& consume) {
  int fd = 0;
  if (file != "-") {
    fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw Error("cannot open " + file + ": " + std::strerror(errno));
  }
  std::unique_ptr<Decompressor> dec = Decompressor::Create(method.empty() ? "none" : method);
  std::vector<char> buf(kReadSize);
  while (true) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      std::string err = std::strerror(errno);
      if (fd != 0) ::close(fd);
      throw Error("cannot read " + file + ": " + err);
    }
    if (n == 0) break;
    dec->Feed(std::string_view(buf.data(), static_cast<size_t>(n)), consume);
  }
  dec->Finish(consume);
  if (fd != 0) ::close(fd);
}

std::string DisplayPath(std::string_view path) {
  return path.empty() ? "." : "./" + std::string(path);
}

class TreeSink : public NarSink {
 public:
  void CreateDirectory(std::string_view path) override { out += "D\t" + DisplayPath(path) + "\n"; }
  void BeginRegular(std::string_view path, bool executable, uint64_t size, uint64_t) override {
    path_ = DisplayPath(path);
    executable_ = executable;
    size_ = size;
    hasher_ = std::make_unique<Sha256>();
  }
  void RegularData(std::string_view data) override { hasher_->Update(data); }
  void EndRegular() override {
    out += std::string("F\t") + (executable_ ? "x" : "-") + "\t" + std::to_string(size_) + "\t" +
           hasher_->Finish().ToBase16() + "\t" + path_ + "\n";
  }
  void CreateSymlink(std::string_view path, std::string_view target) override {
    out += "L\t" + DisplayPath(path) + "\t" + std::string(target) + "\n";
  }
  std::string out;

 private:
  std::string path_;
  bool executable_ = false;
  uint64_t size_ = 0;
  std::unique_ptr<Sha256> hasher_;
};

std::string Describe(const ListingNode& n) {
  switch (n.type) {
    case ListingNode::Type::kDirectory:
      return "directory";
    case ListingNode::Type::kSymlink:
      return "symlink -> " + n.target;
    case ListingNode::Type::kRegular:
      return "regular size=" + std::to_string(n.size) +
             " executable=" + std::to_string(n.executable) +
             " narOffset=" + (n.nar_offset ? std::to_string(*n.nar_offset) : std::string("none"));
  }
  return "?";
}

// Returns the first difference between two listings ("" if equal).
std::string Diff(const ListingNode& a, const ListingNode& b, const std::string& path) {
  if (a.type != b.type || a.size != b.size || a.executable != b.executable ||
      a.nar_offset != b.nar_offset || a.target != b.target) {
    return DisplayPath(path) + ": listing has " + Describe(a) + ", NAR has " + Describe(b);
  }
  for (const auto& [name, child] : a.entries) {
    std::string sub = path.empty() ? name : path + "/" + name;
    auto it = b.entries.find(name);
    if (it == b.entries.end()) return DisplayPath(sub) + ": in the listing, not in the NAR";
    std::string d = Diff(child, it->second, sub);
    if (!d.empty()) return d;
  }
  for (const auto& [name, child] : b.entries) {
    if (!a.entries.count(name)) {
      return DisplayPath(path.empty() ? name : path + "/" + name) +
             ": in the NAR, not in the listing";
    }
  }
  return "";
}

int Usage() {
  std::cerr << "usage: nar_tool hash [--decompress M] [--expect-size N] [--expect-hash H] FILE|-\n"
               "       nar_tool listing [--decompress M] FILE|-\n"
               "       nar_tool check-listing [--decompress M] LISTING NAR|-\n"
               "       nar_tool decompress METHOD   (stdin -> stdout)\n";
  return 2;
}

int Run(std::vector<std::string> args) {
  if (args.empty()) return Usage();
  std::string cmd = args[0];
  args.erase(args.begin());
  if (cmd == "decompress") {
    if (args.size() != 1) return Usage();
    ReadInput("-", args[0], [](std::string_view d) { WriteAll(1, d); });
    return 0;
  }
  std::string method;
  std::optional<uint64_t> expect_size;
  std::optional<Hash> expect_hash;
  std::vector<std::string> files;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--decompress" && i + 1 < args.size()) {
      method = args[++i];
    } else if (args[i] == "--expect-size" && i + 1 < args.size()) {
      expect_size = std::stoull(args[++i]);
    } else if (args[i] == "--expect-hash" && i + 1 < args.size()) {
      expect_hash = Hash::Parse(args[++i]);
    } else {
      files.push_back(args[i]);
    }
  }
  if (cmd == "hash" && files.size() == 1) {
    TreeSink sink;
    NarParser parser(sink, files[0]);
    ReadInput(files[0], method, [&](std::string_view d) { parser.Feed(d); });
    Hash h = parser.Finish(expect_size, expect_hash);
    WriteAll(1, "hash " + h.ToNix32() + "\nsize " + std::to_string(parser.bytes_consumed()) + "\n" +
                    sink.out);
    return 0;
  }
  if (cmd == "listing" && files.size() == 1) {
    ListingBuilder builder;
    NarParser parser(builder, files[0]);
    ReadInput(files[0], method, [&](std::string_view d) { parser.Feed(d); });
    parser.Finish(expect_size, expect_hash);
    WriteAll(1, ListingToJson(builder.root()) + "\n");
    return 0;
  }
  if (cmd == "check-listing" && files.size() == 2) {
    std::string json;
    ReadInput(files[0], "none", [&](std::string_view d) { json.append(d); });
    ListingNode listed = ParseListing(json, files[0]);
    ListingBuilder builder;
    NarParser parser(builder, files[1]);
    ReadInput(files[1], method, [&](std::string_view d) { parser.Feed(d); });
    parser.Finish(expect_size, expect_hash);
    std::string diff = Diff(listed, builder.root(), "");
    if (!diff.empty()) {
      std::cerr << "listing " << files[0] << " differs from NAR " << files[1] << ": " << diff
                << "\n";
      return 1;
    }
    std::cout << "listing matches\n";
    return 0;
  }
  return Usage();
}

}  // namespace
}  // namespace nls

int main(int argc, char** argv) {
  try {
    return nls::Run(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const std::exception& e) {
    std::cerr << "nar_tool: " << e.what() << "\n";
    return 2;
  }
}
