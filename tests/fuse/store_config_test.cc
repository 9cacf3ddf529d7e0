// How nix.conf and the command line combine into fetch options (fuse/store_config.h).
#include "fuse/store_config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "fetch/error.h"

namespace nls {
namespace {

class StoreConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nls-store-config-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string WriteConf(const std::string& text) {
    const std::string path = dir_ + "/nix.conf";
    std::ofstream(path) << text;
    return path;
  }

  std::string dir_;
};

constexpr char kKey[] = "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=";

TEST_F(StoreConfigTest, NixConfAloneConfigures) {
  StoreOptions options;
  options.nix_conf =
      WriteConf(std::string("substituters = http://127.0.0.1:1 file:///srv\n") +
                "trusted-public-keys = " + kKey + "\n" + "narinfo-cache-negative-ttl = 7\n");
  const StoreSetup setup = BuildStoreSetup(options, "");
  EXPECT_EQ(setup.fetch.substituters.size(), 2u);
  EXPECT_EQ(setup.fetch.trusted_keys.keys().size(), 1u);
  EXPECT_DOUBLE_EQ(setup.fetch.negative_ttl_s, 7);  // nix.conf's value, not the CLI default
  EXPECT_EQ(setup.nix_conf_used, *options.nix_conf);
}

TEST_F(StoreConfigTest, CommandLineOverridesNixConf) {
  StoreOptions options;
  options.nix_conf =
      WriteConf(std::string("substituters = http://127.0.0.1:1\n") +
                "trusted-public-keys = " + kKey + "\n" + "narinfo-cache-negative-ttl = 3600\n");
  options.substituters = {"file:///other"};
  options.negative_ttl_s = 0.5;
  options.no_require_sigs = true;
  const StoreSetup setup = BuildStoreSetup(options, "");
  ASSERT_EQ(setup.fetch.substituters.size(), 1u);
  EXPECT_EQ(setup.fetch.substituters[0], "file:///other");
  EXPECT_DOUBLE_EQ(setup.fetch.negative_ttl_s, 0.5);
  EXPECT_FALSE(setup.fetch.require_sigs);
}

TEST_F(StoreConfigTest, DefaultNegativeTtlIsShort) {
  StoreOptions options;
  options.substituters = {"file:///srv"};
  options.no_require_sigs = true;
  EXPECT_DOUBLE_EQ(BuildStoreSetup(options, "").fetch.negative_ttl_s, 2);
}

TEST_F(StoreConfigTest, MissingNixConfIsAnError) {
  StoreOptions options;
  options.nix_conf = dir_ + "/absent.conf";
  EXPECT_THROW(BuildStoreSetup(options, ""), ConfigError);
}

}  // namespace
}  // namespace nls
