// nix.conf parsing (includes, extra-, overrides, errors) and application onto FetchOptions.
#include "fetch/nix_conf.h"

#include <gtest/gtest.h>

#include "fetch/error.h"
#include "tests/fetch/fetch_test_util.h"

namespace nls {
namespace {

using testing::TempDir;
using testing::WriteFile;

const char* kNixosKey = "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=";

std::vector<std::string> KeyNames(const FetchOptions& o) {
  std::vector<std::string> names;
  for (const auto& k : o.trusted_keys.keys()) names.push_back(k.name());
  return names;
}

TEST(NixConfTest, WordsAreJoinedAndOriginsRecorded) {
  NixConf c = ParseNixConf(
      "# a comment\n"
      "substituters = https://a.example \t file:///srv/b   # trailing comment\n"
      "\n"
      "  connect-timeout   =   5  \n",
      "/etc/nix/nix.conf");
  ASSERT_EQ(c.settings.size(), 2u);
  EXPECT_EQ(c.settings[0].name, "substituters");
  EXPECT_EQ(c.settings[0].value, "https://a.example file:///srv/b");
  EXPECT_EQ(c.settings[0].origin, "/etc/nix/nix.conf:2");
  EXPECT_EQ(c.settings[1].name, "connect-timeout");
  EXPECT_EQ(c.settings[1].value, "5");
  EXPECT_EQ(c.settings[1].origin, "/etc/nix/nix.conf:4");
}

TEST(NixConfTest, EmptyValueIsAllowed) {
  NixConf c = ParseNixConf("substituters =\n", "x.conf");
  ASSERT_EQ(c.settings.size(), 1u);
  EXPECT_EQ(c.settings[0].value, "");
  FetchOptions o;
  o.substituters = {"file:///old"};
  ApplyNixConf(c, o);
  EXPECT_TRUE(o.substituters.empty());
}

TEST(NixConfTest, SyntaxErrorsNameFileAndLine) {
  try {
    ParseNixConf("substituters = a\nlonelyword\n", "/etc/nix/nix.conf");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("/etc/nix/nix.conf:2"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ParseNixConf("substituters a b\n", "f"), ConfigError);
  EXPECT_THROW(ParseNixConf("include a b\n", "f"), ConfigError);
}

TEST(NixConfTest, IncludesResolveRelativeToTheIncludingFile) {
  TempDir tmp;
  std::string d = tmp.path();
  WriteFile(d + "/main/nix.conf",
            "substituters = file:///one\n"
            "include sub/more.conf\n"
            "!include does-not-exist.conf\n"
            "extra-substituters = file:///four\n");
  WriteFile(d + "/main/sub/more.conf",
            "extra-substituters = file:///two\n"
            "!include ../../other/last.conf\n");
  WriteFile(d + "/other/last.conf", "extra-substituters = file:///three\n");
  FetchOptions o;
  ApplyNixConf(ReadNixConf(d + "/main/nix.conf"), o);
  EXPECT_EQ(o.substituters, (std::vector<std::string>{"file:///one", "file:///two", "file:///three",
                                                      "file:///four"}));
}

TEST(NixConfTest, MissingIncludeIsAnErrorButNotForBangInclude) {
  TempDir tmp;
  WriteFile(tmp.path() + "/nix.conf", "include nope.conf\n");
  try {
    ReadNixConf(tmp.path() + "/nix.conf");
    FAIL();
  } catch (const ConfigError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("nope.conf"), std::string::npos) << msg;
    EXPECT_NE(msg.find(tmp.path() + "/nix.conf:1"), std::string::npos) << msg;
  }
  WriteFile(tmp.path() + "/ok.conf", "!include nope.conf\n");
  EXPECT_TRUE(ReadNixConf(tmp.path() + "/ok.conf").settings.empty());
  EXPECT_THROW(ReadNixConf(tmp.path() + "/missing.conf"), ConfigError);
}

TEST(NixConfTest, IncludeLoopIsAnError) {
  TempDir tmp;
  WriteFile(tmp.path() + "/a.conf", "include b.conf\n");
  WriteFile(tmp.path() + "/b.conf", "include a.conf\n");
  EXPECT_THROW(ReadNixConf(tmp.path() + "/a.conf"), ConfigError);
}

TEST(NixConfTest, LaterSettingsOverrideAndExtraAppends) {
  FetchOptions o;
  ApplyNixConf(ParseNixConf("extra-substituters = file:///x\n"
                            "substituters = file:///a\n"
                            "extra-substituters = file:///b\n"
                            "trusted-public-keys = " +
                                std::string(kNixosKey) +
                                "\n"
                                "extra-trusted-public-keys = test-1:" +
                                std::string(44 - 1, 'A') + "=\n",
                            "f"),
               o);
  EXPECT_EQ(o.substituters, (std::vector<std::string>{"file:///a", "file:///b"}));
  EXPECT_EQ(KeyNames(o), (std::vector<std::string>{"cache.nixos.org-1", "test-1"}));
  ApplyNixConf(ParseNixConf("trusted-public-keys = " + std::string(kNixosKey) + "\n", "g"), o);
  EXPECT_EQ(KeyNames(o), (std::vector<std::string>{"cache.nixos.org-1"}));
}

TEST(NixConfTest, AppliesScalarSettingsAndIgnoresUnknownOnes) {
  FetchOptions o;
  ApplyNixConf(ParseNixConf("require-sigs = false\n"
                            "netrc-file = /etc/nix/netrc\n"
                            "ssl-cert-file = /etc/ssl/ca.pem\n"
                            "connect-timeout = 7\n"
                            "stalled-download-timeout = 12.5\n"
                            "download-attempts = 3\n"
                            "narinfo-cache-negative-ttl = 0\n"
                            "http-connections = 4\n"
                            "max-jobs = 8\n"
                            "experimental-features = nix-command flakes\n"
                            "extra-experimental-features = ca-derivations\n",
                            "f"),
               o);
  EXPECT_FALSE(o.require_sigs);
  EXPECT_EQ(o.netrc_file, "/etc/nix/netrc");
  EXPECT_EQ(o.ssl_cert_file, "/etc/ssl/ca.pem");
  EXPECT_DOUBLE_EQ(o.connect_timeout_s, 7);
  EXPECT_DOUBLE_EQ(o.stalled_timeout_s, 12.5);
  EXPECT_EQ(o.download_attempts, 3);
  EXPECT_DOUBLE_EQ(o.negative_ttl_s, 0);
  EXPECT_EQ(o.max_parallel_downloads, 4);
  // http-connections = 0 (Nix: unlimited) keeps our bound.
  ApplyNixConf(ParseNixConf("http-connections = 0\n", "f"), o);
  EXPECT_EQ(o.max_parallel_downloads, 4);
}

TEST(NixConfTest, DefaultsAreOfflineWithNothingConfigured) {
  FetchOptions o;
  ApplyNixConf(ParseNixConf("", "empty"), o);
  EXPECT_TRUE(o.substituters.empty());
  EXPECT_TRUE(o.trusted_keys.empty());
  EXPECT_TRUE(o.require_sigs);
}

TEST(NixConfTest, InvalidValuesNameSettingValueAndPlace) {
  for (std::string line :
       {"require-sigs = yes", "connect-timeout = soon", "stalled-download-timeout = 0",
        "download-attempts = 0", "narinfo-cache-negative-ttl = -1", "http-connections = many",
        "trusted-public-keys = not-a-key"}) {
    FetchOptions o;
    try {
      ApplyNixConf(ParseNixConf("\n" + line + "\n", "/x/nix.conf"), o);
      FAIL() << line;
    } catch (const ConfigError& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find("/x/nix.conf:2"), std::string::npos) << msg;
      EXPECT_NE(msg.find(line.substr(0, line.find(' '))), std::string::npos) << msg;
    }
  }
}

TEST(NixConfTest, SystemConfigHonoursNixConfDirAndNixConfig) {
  TempDir tmp;
  WriteFile(tmp.path() + "/nix.conf", "substituters = file:///from-file\n");
  setenv("NIX_CONF_DIR", tmp.path().c_str(), 1);
  setenv("NIX_CONFIG", "extra-substituters = file:///from-env\nrequire-sigs = false", 1);
  FetchOptions o;
  ApplyNixConf(ReadSystemNixConf(), o);
  unsetenv("NIX_CONF_DIR");
  unsetenv("NIX_CONFIG");
  EXPECT_EQ(o.substituters, (std::vector<std::string>{"file:///from-file", "file:///from-env"}));
  EXPECT_FALSE(o.require_sigs);
}

}  // namespace
}  // namespace nls
