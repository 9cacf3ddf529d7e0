// Helpers for the fetcher tests: temporary directories, binary caches written by the test itself
// (NAR via NarWriter, optionally zstd-compressed, narinfo signed with a SecretKey), a sink that
// rebuilds the NAR from events, and tests/lib/fault_server.py run as a child process.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zstd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "fetch/hash.h"
#include "fetch/http_client.h"
#include "fetch/nar_sink.h"
#include "fetch/nar_writer.h"
#include "fetch/narinfo.h"
#include "fetch/signature.h"
#include "fetch/store_path.h"

namespace nls::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "nls-fetch-test-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline void WriteFile(const std::string& path, std::string_view data) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline std::string ZstdCompress(std::string_view data) {
  std::string out(ZSTD_compressBound(data.size()), '\0');
  size_t n = ZSTD_compress(out.data(), out.size(), data.data(), data.size(), 3);
  if (ZSTD_isError(n)) throw std::runtime_error("zstd failed");
  out.resize(n);
  return out;
}

// A binary cache in a directory, filled by the test.
class TestCache {
 public:
  // `priority` < 0: no Priority line. `write_cache_info` false: no nix-cache-info at all.
  explicit TestCache(std::string dir, int priority = -1, std::string store_dir = "/nix/store",
                     bool write_cache_info = true)
      : dir_(std::move(dir)) {
    std::filesystem::create_directories(dir_ + "/nar");
    if (write_cache_info) {
      std::string info = "StoreDir: " + store_dir + "\nWantMassQuery: 1\n";
      if (priority >= 0) info += "Priority: " + std::to_string(priority) + "\n";
      WriteFile(dir_ + "/nix-cache-info", info);
    }
  }

  const std::string& dir() const { return dir_; }
  std::string url() const { return "file://" + dir_; }

  // A store path hash part derived from `seed` (valid Nix32).
  static std::string HashPart(std::string_view seed) {
    return Hash::Of(seed).ToNix32().substr(0, StorePath::kHashLength);
  }

  // Writes the NAR of `tree` and a narinfo for "<hash(name)>-<name>"; returns the narinfo.
  NarInfo Add(const std::string& name, const NarTree& tree, const SecretKey* key,
              const std::string& compression = "none") {
    std::string nar = WriteNar(tree);
    std::string file = compression == "zstd" ? ZstdCompress(nar) : nar;
    Hash file_hash = Hash::Of(file);
    NarInfo info;
    info.store_path = StorePath::FromBaseName(HashPart(name) + "-" + name);
    info.url = "nar/" + file_hash.ToNix32() + (compression == "zstd" ? ".nar.zst" : ".nar");
    info.compression = compression;
    info.file_hash = file_hash;
    info.file_size = file.size();
    info.nar_hash = Hash::Of(nar);
    info.nar_size = nar.size();
    WriteFile(dir_ + "/" + info.url, file);
    return WriteNarInfo(info, key);
  }

  // (Re)writes `info` as <its hash part>.narinfo (or `as_hash_part`), signed when `key` given.
  NarInfo WriteNarInfo(NarInfo info, const SecretKey* key,
                       std::optional<std::string> as_hash_part = std::nullopt) {
    if (key != nullptr) info.sigs = {key->Sign(info.Fingerprint())};
    std::string hp = as_hash_part ? *as_hash_part : std::string(info.store_path.hash_part());
    WriteFile(dir_ + "/" + hp + ".narinfo", info.ToString());
    return info;
  }

 private:
  std::string dir_;
};

// Rebuilds NAR bytes from the events, so a fetched NAR can be compared with the original.
class RebuildSink : public NarSink {
 public:
  void CreateDirectory(std::string_view path) override {
    Node(path) = NarTree::Directory();
    ++events;
  }
  void BeginRegular(std::string_view path, bool executable, uint64_t, uint64_t) override {
    current_ = &Node(path);
    *current_ = NarTree::File("", executable);
    ++events;
  }
  void RegularData(std::string_view data) override { current_->contents.append(data); }
  void EndRegular() override { current_ = nullptr; }
  void CreateSymlink(std::string_view path, std::string_view target) override {
    Node(path) = NarTree::Symlink(std::string(target));
    ++events;
  }
  std::string Nar() const { return WriteNar(root_); }
  int events = 0;

 private:
  NarTree& Node(std::string_view path) {
    NarTree* n = &root_;
    while (!path.empty()) {
      size_t slash = path.find('/');
      std::string part(path.substr(0, slash));
      n = &n->entries[part];
      path = slash == std::string_view::npos ? std::string_view() : path.substr(slash + 1);
    }
    return *n;
  }
  NarTree root_;
  NarTree* current_ = nullptr;
};

// tests/lib/fault_server.py serving `root` on a free loopback port, as a child process.
class FaultServerProcess {
 public:
  // s3_json: empty, or fault_server.py's --s3 object (serve as a SigV4-checking S3 bucket).
  explicit FaultServerProcess(const std::string& root, const std::string& faults_json = "[]",
                              const std::string& s3_json = "") {
    const char* src = std::getenv("NLS_SOURCE_DIR");
    std::string script = src != nullptr
                             ? std::string(src) + "/tests/lib/fault_server.py"
                             : (std::filesystem::path(__FILE__).parent_path().parent_path() /
                                "lib" / "fault_server.py")
                                   .string();
    faults_file_ = root + "/../faults-" + std::to_string(getpid()) + ".json";
    WriteFile(faults_file_, faults_json);
    int fds[2];
    if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
    pid_ = fork();
    if (pid_ == 0) {
      dup2(fds[1], 1);
      close(fds[0]);
      close(fds[1]);
      if (s3_json.empty()) {
        execlp("python3", "python3", script.c_str(), "--root", root.c_str(), "--faults",
               faults_file_.c_str(), static_cast<char*>(nullptr));
      } else {
        execlp("python3", "python3", script.c_str(), "--root", root.c_str(), "--faults",
               faults_file_.c_str(), "--s3", s3_json.c_str(), static_cast<char*>(nullptr));
      }
      _exit(127);
    }
    close(fds[1]);
    std::string line;
    char c;
    while (read(fds[0], &c, 1) == 1 && c != '\n') line += c;
    close(fds[0]);
    if (!line.starts_with("PORT ")) throw std::runtime_error("fault_server did not start: " + line);
    port_ = std::stoi(line.substr(5));
  }
  ~FaultServerProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
    std::filesystem::remove(faults_file_);
  }
  FaultServerProcess(const FaultServerProcess&) = delete;
  FaultServerProcess& operator=(const FaultServerProcess&) = delete;
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }
  // The server's request log (GET /_log, itself not logged): JSON text, a list of
  // {"method", "path", "range", "status", "fault", "s3"}.
  std::string Log() const {
    HttpClient client({});
    std::string log;
    client.GetSmall(url() + "/_log", 1 << 20, &log);
    return log;
  }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  std::string faults_file_;
};

}  // namespace nls::testing
