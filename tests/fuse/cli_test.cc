#include "fuse/cli.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace nls {
namespace {

const std::string kHash = "syd87l2rxw8cbsxmxl853h0r6pdwhwjr";
const std::string kBase = kHash + "-curl-7.82.0-bin";

MountCommand Mount(std::vector<std::string> args) {
  args.insert(args.begin(), "mount");
  Command c = ParseCommandLine(args);
  EXPECT_TRUE(std::holds_alternative<MountCommand>(c));
  return std::get<MountCommand>(c);
}

std::string UsageMessage(std::vector<std::string> args) {
  try {
    ParseCommandLine(args);
  } catch (const UsageError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no UsageError";
  return "";
}

TEST(CliTest, MountDefaults) {
  MountCommand m = Mount({"/nix/store"});
  EXPECT_EQ(m.mountpoint, "/nix/store");
  EXPECT_TRUE(m.store.substituters.empty());
  EXPECT_FALSE(m.store.no_require_sigs);
  EXPECT_FALSE(m.store.nix_conf.has_value());
  EXPECT_EQ(m.store.cache_dir, "/var/cache/nix-lazy-store");
  EXPECT_EQ(m.store.cache_size, 0u);
  EXPECT_FALSE(m.store.negative_ttl_s.has_value());  // nix.conf or the 2 s default decides
  EXPECT_TRUE(m.store.prefetch_references);
  EXPECT_FALSE(m.allow_other);
  EXPECT_FALSE(m.foreground);
  EXPECT_EQ(m.metrics_listen, "");
  EXPECT_FALSE(m.store.log_level.has_value());
}

TEST(CliTest, MountEveryOption) {
  MountCommand m = Mount({"--substituter",
                          "file:///a",
                          "--substituter=http://b",
                          "--trusted-public-key",
                          "k1:AAAA",
                          "--trusted-public-key=k2:BBBB",
                          "--no-require-sigs",
                          "--nix-conf",
                          "/tmp/nix.conf",
                          "--cache-dir",
                          "/var/c",
                          "--cache-size",
                          "20G",
                          "--pin",
                          "/nix/store/" + kBase,
                          "--pin",
                          kBase,
                          "--negative-ttl",
                          "0.5",
                          "--no-prefetch-references",
                          "--allow-other",
                          "--foreground",
                          "--log-level",
                          "debug",
                          "--metrics-listen",
                          "127.0.0.1:9100",
                          "--log-file",
                          "/tmp/l",
                          "/mnt/store"});
  EXPECT_EQ(m.store.substituters, (std::vector<std::string>{"file:///a", "http://b"}));
  EXPECT_EQ(m.store.trusted_public_keys, (std::vector<std::string>{"k1:AAAA", "k2:BBBB"}));
  EXPECT_TRUE(m.store.no_require_sigs);
  EXPECT_EQ(*m.store.nix_conf, "/tmp/nix.conf");
  EXPECT_EQ(m.store.cache_dir, "/var/c");
  EXPECT_EQ(m.store.cache_size, 20ull << 30);
  EXPECT_EQ(m.store.pins, (std::vector<std::string>{kBase, kBase}));
  EXPECT_DOUBLE_EQ(m.store.negative_ttl_s.value(), 0.5);
  EXPECT_FALSE(m.store.prefetch_references);
  EXPECT_TRUE(m.allow_other);
  EXPECT_TRUE(m.foreground);
  EXPECT_EQ(*m.store.log_level, LogLevel::kDebug);
  EXPECT_EQ(m.metrics_listen, "127.0.0.1:9100");
  EXPECT_EQ(m.log_file, "/tmp/l");
  EXPECT_EQ(m.mountpoint, "/mnt/store");
  EXPECT_TRUE(
      Mount({"--no-prefetch-references", "--prefetch-references", "/m"}).store.prefetch_references);
  EXPECT_EQ(Mount({"/m"}).store.min_free_space, 0u);
  EXPECT_EQ(Mount({"--min-free-space", "5G", "/m"}).store.min_free_space, 5ull << 30);
}

TEST(CliTest, MountErrors) {
  EXPECT_NE(UsageMessage({"mount"}).find("missing MOUNTPOINT"), std::string::npos);
  EXPECT_NE(UsageMessage({"mount", "/a", "/b"}).find("'/b' is extra"), std::string::npos);
  EXPECT_NE(UsageMessage({"mount", "--frobnicate", "/a"}).find("unknown option '--frobnicate'"),
            std::string::npos);
  EXPECT_NE(UsageMessage({"mount", "/a", "--substituter"}).find("--substituter needs a value"),
            std::string::npos);
  EXPECT_NE(UsageMessage({"mount", "--cache-size", "lots", "/a"}).find("--cache-size"),
            std::string::npos);
  EXPECT_NE(UsageMessage({"mount", "--min-free-space", "lots", "/a"}).find("--min-free-space"),
            std::string::npos);
  EXPECT_NE(UsageMessage({"mount", "--negative-ttl", "-1", "/a"}).find("--negative-ttl"),
            std::string::npos);
  EXPECT_NE(UsageMessage({"mount", "--negative-ttl", "2s", "/a"}).find("'2s'"), std::string::npos);
  EXPECT_NE(UsageMessage({"mount", "--log-level", "loud", "/a"}).find("'loud'"), std::string::npos);
  EXPECT_NE(UsageMessage({"mount", "--pin", "/nix/store/short-x", "/a"}).find("not a store path"),
            std::string::npos);
  EXPECT_NE(UsageMessage({"mount", "--trusted-public-key", "nocolon", "/a"}).find("NAME:BASE64"),
            std::string::npos);
  EXPECT_NE(UsageMessage({"mount", "--metrics-listen", "9100", "/a"}).find("ADDR:PORT"),
            std::string::npos);
  EXPECT_NE(UsageMessage({"mount", "--foreground=yes", "/a"}).find("takes no value"),
            std::string::npos);
  EXPECT_NE(UsageMessage({"mount", "--no-require-sigs=1", "/a"}).find("takes no value"),
            std::string::npos);
}

TEST(CliTest, DoubleDashEndsOptions) {
  MountCommand m = Mount({"--foreground", "--", "--weird-dir"});
  EXPECT_EQ(m.mountpoint, "--weird-dir");
}

TEST(CliTest, Help) {
  for (const char* cmd : {"mount", "prefetch", "status", "gc", "fsck"}) {
    Command c = ParseCommandLine({cmd, "--help"});
    ASSERT_TRUE(std::holds_alternative<HelpCommand>(c)) << cmd;
    EXPECT_NE(std::get<HelpCommand>(c).text.find(std::string("nix-lazy-store ") + cmd),
              std::string::npos);
  }
  EXPECT_TRUE(std::holds_alternative<HelpCommand>(ParseCommandLine({"--help"})));
  EXPECT_NE(UsageMessage({}).find("missing COMMAND"), std::string::npos);
  EXPECT_NE(UsageMessage({"mnt"}).find("unknown command 'mnt'"), std::string::npos);
}

TEST(CliTest, Prefetch) {
  Command c = ParseCommandLine({"prefetch", "--substituter", "file:///c", "--jobs", "8",
                                "/nix/store/" + kBase + "/bin/curl", kBase});
  auto& p = std::get<PrefetchCommand>(c);
  EXPECT_EQ(p.paths, (std::vector<std::string>{kBase, kBase}));
  EXPECT_EQ(p.jobs, 8);
  EXPECT_EQ(p.store.substituters.size(), 1u);
  EXPECT_NE(UsageMessage({"prefetch"}).find("missing STORE-PATH"), std::string::npos);
  EXPECT_NE(UsageMessage({"prefetch", "--jobs", "0", kBase}).find("--jobs"), std::string::npos);
  EXPECT_NE(UsageMessage({"prefetch", "/usr/bin/ls"}).find("not a store path"), std::string::npos);
  EXPECT_NE(UsageMessage({"prefetch", "--allow-other", kBase}).find("unknown option"),
            std::string::npos);
}

TEST(CliTest, StatusGcFsck) {
  auto s = std::get<StatusCommand>(ParseCommandLine({"status", "--json", "/nix/store"}));
  EXPECT_EQ(s.mountpoint, "/nix/store");
  EXPECT_TRUE(s.json);
  EXPECT_NE(UsageMessage({"status"}).find("one MOUNTPOINT"), std::string::npos);

  auto g = std::get<GcCommand>(ParseCommandLine({"gc", "--cache-dir", "/c", "--max-size", "1M"}));
  EXPECT_EQ(g.cache_dir, "/c");
  EXPECT_EQ(g.max_size, 1u << 20);
  EXPECT_NE(UsageMessage({"gc", "--max-size", "1M"}).find("--cache-dir DIR is required"),
            std::string::npos);
  EXPECT_NE(UsageMessage({"gc", "--cache-dir", "/c"}).find("--max-size SIZE is required"),
            std::string::npos);
  EXPECT_NE(UsageMessage({"gc", "--cache-dir", "/c", "--max-size", "1X"}).find("--max-size"),
            std::string::npos);

  auto f = std::get<FsckCommand>(ParseCommandLine({"fsck", "--cache-dir=/c"}));
  EXPECT_EQ(f.cache_dir, "/c");
  EXPECT_NE(UsageMessage({"fsck"}).find("--cache-dir DIR is required"), std::string::npos);
  EXPECT_NE(UsageMessage({"fsck", "--cache-dir", "/c", "extra"}).find("unexpected operand"),
            std::string::npos);
}

TEST(CliTest, ListenAddress) {
  auto a = ParseListenAddress("127.0.0.1:9100");
  EXPECT_EQ(a.host, "127.0.0.1");
  EXPECT_EQ(a.port, 9100);
  EXPECT_EQ(ParseListenAddress("localhost:1").host, "127.0.0.1");
  for (const char* bad : {"", ":80", "1.2.3.4", "1.2.3.4:", "1.2.3.4:0", "1.2.3.4:65536",
                          "1.2.3:80", "1.2.3.256:80", "1.2.3.4.5:80", "a.b.c.d:80", "x:80"}) {
    EXPECT_THROW(ParseListenAddress(bad), UsageError) << bad;
  }
}

TEST(CliTest, StorePathArgument) {
  EXPECT_EQ(StorePathArgument(kBase), kBase);
  EXPECT_EQ(StorePathArgument("/nix/store/" + kBase), kBase);
  EXPECT_EQ(StorePathArgument("/nix/store/" + kBase + "/bin/x"), kBase);
  EXPECT_THROW(StorePathArgument("/nix/store/"), UsageError);
  EXPECT_THROW(StorePathArgument(kHash), UsageError);
  EXPECT_THROW(StorePathArgument("/other/" + kBase), UsageError);
}

}  // namespace
}  // namespace nls
