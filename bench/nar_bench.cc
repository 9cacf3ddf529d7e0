// nar_bench: benchmark programs for the NAR formats (driven by bench/formats_bench.py).
//
//   nar_bench gen OUT SIZE_MB [SEED]
//       Writes a deterministic NAR of about SIZE_MB MiB: a tree of directories holding many
//       files of mixed sizes (mostly small, some medium, a few large), text-like compressible
//       contents, some executables and symlinks.
//   nar_bench parse FILE [RUNS]
//       Loads FILE into memory, then RUNS times (interleaved) hashes it with OpenSSL SHA-256
//       alone and parses it with NarParser (which hashes too) into a sink that only counts,
//       both fed in 1 MiB pieces. Prints medians of wall and thread-CPU seconds and ratios:
//       "sha256_s S parse_s P ratio R sha256_cpu_s SC parse_cpu_s PC cpu_ratio RC mb N".
//   nar_bench decompress METHOD FILE
//       Decompresses FILE with nls::Decompressor (1 MiB reads) and writes the output to stdout,
//       like `zstd -d -c FILE` / `xz -d -c FILE`.
#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <time.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "fetch/decompressor.h"
#include "fetch/error.h"
#include "fetch/nar_parser.h"
#include "fetch/nar_writer.h"

namespace nls {
namespace {

constexpr size_t kPiece = 1 << 20;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open " + path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Text-like contents: words from a small vocabulary with some noise (compresses ~3-4x).
std::string Contents(std::mt19937_64& rng, size_t size) {
  static const char* kWords[] = {"the ",   "nix ",     "store ", "lazy ",  "fetch ", "chunk ",
                                 "cache ", "archive ", "path ",  "hash ",  "\n",     "0x7f3a ",
                                 "lib",    ".so ",     "ELF",    "\0\0\0", "{",      "}\n"};
  std::string s;
  s.reserve(size + 16);
  while (s.size() < size) {
    uint64_t r = rng();
    if ((r & 15) == 0) {
      for (int i = 0; i < 8; ++i) s += static_cast<char>((r >> (8 * i)) & 0xff);
    } else {
      s += kWords[(r >> 8) % (sizeof(kWords) / sizeof(kWords[0]))];
    }
  }
  s.resize(size);
  return s;
}

size_t FileSize(std::mt19937_64& rng) {
  uint64_t r = rng() % 1000;
  if (r < 700) return rng() % 4096;                // small
  if (r < 950) return 4096 + rng() % (60 * 1024);  // medium
  if (r < 995) return 65536 + rng() % (1 << 20);   // large
  return (1 << 20) + rng() % (8 << 20);            // huge
}

int Gen(const std::string& out, size_t size_mb, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const uint64_t target = static_cast<uint64_t>(size_mb) << 20;
  uint64_t total = 0;
  NarTree root = NarTree::Directory();
  for (int d = 0; total < target; ++d) {
    NarTree dir = NarTree::Directory();
    NarTree* sub = &dir;
    for (int f = 0; f < 200 && total < target; ++f) {
      if (f % 50 == 49) {  // a nested directory now and then
        sub = &sub->entries["sub" + std::to_string(f)];
        *sub = NarTree::Directory();
      }
      size_t n = std::min<uint64_t>(FileSize(rng), target - total);
      char name[32];
      std::snprintf(name, sizeof name, "file-%04d%s", f, f % 9 == 0 ? ".so" : "");
      sub->entries[name] = NarTree::File(Contents(rng, n), f % 7 == 0);
      if (f % 23 == 0) sub->entries[std::string(name) + ".link"] = NarTree::Symlink(name);
      total += n;
    }
    char dname[32];
    std::snprintf(dname, sizeof dname, "dir-%05d", d);
    root.entries[dname] = std::move(dir);
  }
  std::string nar = WriteNar(root);
  std::ofstream o(out, std::ios::binary);
  o.write(nar.data(), static_cast<std::streamsize>(nar.size()));
  if (!o) throw Error("cannot write " + out);
  std::cout << "wrote " << out << " " << nar.size() << " bytes\n";
  return 0;
}

class CountingSink : public NarSink {
 public:
  void CreateDirectory(std::string_view) override { ++nodes; }
  void BeginRegular(std::string_view, bool, uint64_t, uint64_t) override { ++nodes; }
  void RegularData(std::string_view d) override { bytes += d.size(); }
  void EndRegular() override {}
  void CreateSymlink(std::string_view, std::string_view) override { ++nodes; }
  uint64_t nodes = 0, bytes = 0;
};

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double CpuNow() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

int Parse(const std::string& file, int runs) {
  std::string nar = ReadFile(file);
  std::string_view all(nar);
  std::vector<double> sha, parse, sha_cpu, parse_cpu;
  unsigned char md[EVP_MAX_MD_SIZE];
  for (int i = 0; i < runs; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    double c0 = CpuNow();
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
    for (size_t off = 0; off < all.size(); off += kPiece) {
      std::string_view p = all.substr(off, kPiece);
      EVP_DigestUpdate(ctx, p.data(), p.size());
    }
    unsigned len = 0;
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    sha.push_back(Seconds(t0));
    sha_cpu.push_back(CpuNow() - c0);

    t0 = std::chrono::steady_clock::now();
    c0 = CpuNow();
    CountingSink sink;
    NarParser parser(sink, file);
    for (size_t off = 0; off < all.size(); off += kPiece) parser.Feed(all.substr(off, kPiece));
    Hash h = parser.Finish(all.size());
    parse.push_back(Seconds(t0));
    parse_cpu.push_back(CpuNow() - c0);
    if (std::memcmp(h.bytes().data(), md, Hash::kSize) != 0) throw Error("hash mismatch");
    if (i == 0) {
      std::cerr << "nodes " << sink.nodes << " content bytes " << sink.bytes << "\n";
    }
  }
  double s = Median(sha), p = Median(parse);
  double sc = Median(sha_cpu), pc = Median(parse_cpu);
  std::cout << "sha256_s " << s << " parse_s " << p << " ratio " << p / s << " sha256_cpu_s " << sc
            << " parse_cpu_s " << pc << " cpu_ratio " << pc / sc << " mb " << all.size() / 1048576.0
            << "\n";
  return 0;
}

void WriteAll(std::string_view d) {
  while (!d.empty()) {
    ssize_t n = ::write(1, d.data(), d.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error(std::string("write: ") + std::strerror(errno));
    }
    d.remove_prefix(static_cast<size_t>(n));
  }
}

int Decompress(const std::string& method, const std::string& file) {
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error("cannot open " + file + ": " + std::strerror(errno));
  auto dec = Decompressor::Create(method);
  auto out = [](std::string_view d) { WriteAll(d); };
  std::vector<char> buf(kPiece);
  while (true) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Error("cannot read " + file + ": " + std::strerror(errno));
    if (n == 0) break;
    dec->Feed(std::string_view(buf.data(), static_cast<size_t>(n)), out);
  }
  dec->Finish(out);
  ::close(fd);
  return 0;
}

int Main(int argc, char** argv) {
  std::vector<std::string> a(argv + 1, argv + argc);
  if (a.size() >= 3 && a[0] == "gen") {
    return Gen(a[1], std::stoul(a[2]), a.size() > 3 ? std::stoull(a[3]) : 1);
  }
  if (a.size() >= 2 && a[0] == "parse") return Parse(a[1], a.size() > 2 ? std::stoi(a[2]) : 5);
  if (a.size() == 3 && a[0] == "decompress") return Decompress(a[1], a[2]);
  std::cerr << "usage: nar_bench gen OUT SIZE_MB [SEED] | parse FILE [RUNS] | "
               "decompress METHOD FILE\n";
  return 2;
}

}  // namespace
}  // namespace nls

int main(int argc, char** argv) {
  try {
    return nls::Main(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "nar_bench: " << e.what() << "\n";
    return 1;
  }
}
