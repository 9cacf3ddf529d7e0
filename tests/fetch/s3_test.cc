// S3 substituters: AWS credentials (file parsing, lookup order), s3:// URL mapping, and fetching
// from tests/lib/fault_server.py in S3 mode, which checks every request's Signature Version 4
// itself (independently of libcurl) and answers 403 as S3 does when it is wrong.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <stdio.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>

#include "fetch/aws_credentials.h"
#include "fetch/error.h"
#include "fetch/fetcher.h"
#include "fetch/http_client.h"
#include "fetch/log.h"
#include "fetch/substituter.h"
#include "tests/fetch/fetch_test_util.h"

namespace nls {
namespace {

using testing::FaultServerProcess;
using testing::RebuildSink;
using testing::TempDir;
using testing::TestCache;
using testing::WriteFile;

// Sets (or with nullopt unsets) an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, std::optional<std::string> value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) {
      ::setenv(name, value->c_str(), 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// No AWS settings from the machine running the tests: each test sets what it needs.
class AwsEnvTest : public ::testing::Test {
 protected:
  TempDir tmp_;
  ScopedEnv id_{"AWS_ACCESS_KEY_ID", std::nullopt};
  ScopedEnv secret_{"AWS_SECRET_ACCESS_KEY", std::nullopt};
  ScopedEnv token_{"AWS_SESSION_TOKEN", std::nullopt};
  ScopedEnv profile_{"AWS_PROFILE", std::nullopt};
  ScopedEnv default_profile_{"AWS_DEFAULT_PROFILE", std::nullopt};
  ScopedEnv file_{"AWS_SHARED_CREDENTIALS_FILE", tmp_.path() + "/credentials"};
};

constexpr char kCredentialsFile[] = R"(# shared credentials
[default]
aws_access_key_id = AKIDDEFAULT
aws_secret_access_key=secretdefault

; the CI's keys
[ci]
AWS_ACCESS_KEY_ID   =   AKIDCI
aws_secret_access_key = secret/ci+key
aws_session_token = token-ci
region = eu-west-1
[incomplete]
aws_access_key_id = AKIDONLY
)";

TEST(AwsCredentialsFileTest, ReadsTheNamedProfile) {
  auto d = ParseAwsCredentialsFile(kCredentialsFile, "default", "F");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->access_key_id, "AKIDDEFAULT");
  EXPECT_EQ(d->secret_access_key, "secretdefault");
  EXPECT_EQ(d->session_token, "");
  EXPECT_EQ(d->source, "F [default]");
  auto ci = ParseAwsCredentialsFile(kCredentialsFile, "ci", "F");
  ASSERT_TRUE(ci);
  EXPECT_EQ(ci->access_key_id, "AKIDCI");
  EXPECT_EQ(ci->secret_access_key, "secret/ci+key");
  EXPECT_EQ(ci->session_token, "token-ci");
  EXPECT_FALSE(ParseAwsCredentialsFile(kCredentialsFile, "other", "F"));
  EXPECT_FALSE(ParseAwsCredentialsFile("", "default", "F"));
}

TEST(AwsCredentialsFileTest, RejectsMalformedFiles) {
  EXPECT_THROW(ParseAwsCredentialsFile(kCredentialsFile, "incomplete", "F"), FormatError);
  EXPECT_THROW(ParseAwsCredentialsFile("[default]\naws_access_key_id\n", "default", "F"),
               FormatError);
  EXPECT_THROW(ParseAwsCredentialsFile("[default\n", "default", "F"), FormatError);
  try {
    ParseAwsCredentialsFile("[a]\nx = 1\nsecret-value\n", "a", "/etc/creds");
    FAIL() << "no error";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("/etc/creds:3"), std::string::npos) << e.what();
    // The line is not quoted: it could be a secret.
    EXPECT_EQ(std::string(e.what()).find("secret-value"), std::string::npos) << e.what();
  }
  // Another profile's odd lines do not matter.
  EXPECT_EQ(ParseAwsCredentialsFile("[b]\njunk\n[a]\naws_access_key_id=K\n"
                                    "aws_secret_access_key=S\n",
                                    "a", "F")
                ->access_key_id,
            "K");
}

TEST_F(AwsEnvTest, EnvironmentFirstThenProfileFromTheFile) {
  EXPECT_FALSE(FindAwsCredentials(""));  // no file, no environment: unsigned
  WriteFile(tmp_.path() + "/credentials", kCredentialsFile);
  EXPECT_EQ(FindAwsCredentials("")->access_key_id, "AKIDDEFAULT");
  {
    ScopedEnv p("AWS_PROFILE", "ci");
    EXPECT_EQ(FindAwsCredentials("")->access_key_id, "AKIDCI");
    ScopedEnv dp("AWS_DEFAULT_PROFILE", "default");  // as the AWS SDK for C++: this one first
    EXPECT_EQ(FindAwsCredentials("")->access_key_id, "AKIDDEFAULT");
  }
  {
    ScopedEnv id("AWS_ACCESS_KEY_ID", "AKIDENV");
    EXPECT_EQ(FindAwsCredentials("")->access_key_id, "AKIDDEFAULT");  // no secret: not used
    ScopedEnv secret("AWS_SECRET_ACCESS_KEY", "secretenv");
    ScopedEnv token("AWS_SESSION_TOKEN", "tokenenv");
    auto env = FindAwsCredentials("");
    EXPECT_EQ(env->access_key_id, "AKIDENV");
    EXPECT_EQ(env->secret_access_key, "secretenv");
    EXPECT_EQ(env->session_token, "tokenenv");
    // A profile named in the URL is read from the file, whatever the environment says.
    EXPECT_EQ(FindAwsCredentials("ci")->access_key_id, "AKIDCI");
  }
  EXPECT_THROW(FindAwsCredentials("missing"), ConfigError);
}

TEST_F(AwsEnvTest, NamedProfileNeedsTheFile) {
  EXPECT_THROW(FindAwsCredentials("ci"), ConfigError);
}

TEST_F(AwsEnvTest, MapsS3UrlsToHttp) {
  HttpClient http({});
  auto aws = Substituter::Create("s3://nix-cache", &http);
  EXPECT_EQ(aws->url(), "https://nix-cache.s3.us-east-1.amazonaws.com");
  EXPECT_EQ(aws->Resolve("nar/x.nar.xz"),
            "https://nix-cache.s3.us-east-1.amazonaws.com/nar/x.nar.xz");
  EXPECT_EQ(aws->s3_credentials(), nullptr);  // no credentials anywhere: unsigned
  EXPECT_EQ(Substituter::Create("s3://nix-cache/?region=eu-west-1&priority=30", &http)->url(),
            "https://nix-cache.s3.eu-west-1.amazonaws.com");
  EXPECT_EQ(Substituter::Create("s3://nix-cache?priority=30", &http)->priority_override(), 30);
  EXPECT_EQ(Substituter::Create("s3://cache.example.com?region=eu-west-1", &http)->url(),
            "https://s3.eu-west-1.amazonaws.com/cache.example.com");
  EXPECT_EQ(
      Substituter::Create("s3://b?endpoint=minio.local:9000&scheme=http&region=x", &http)->url(),
      "http://minio.local:9000/b");
  EXPECT_EQ(Substituter::Create("s3://b?endpoint=https%3A%2F%2Fs3.example%2F", &http)->url(),
            "https://s3.example/b");
  EXPECT_THROW(Substituter::Create("s3://", &http), ConfigError);
  EXPECT_THROW(Substituter::Create("s3://b/prefix", &http), ConfigError);
  EXPECT_THROW(Substituter::Create("s3://b?scheme=ftp", &http), ConfigError);
  EXPECT_THROW(Substituter::Create("s3://b?endpoint=ftp://x", &http), ConfigError);
  EXPECT_THROW(Substituter::Create("s3://b?region=a/b", &http), ConfigError);
  EXPECT_THROW(Substituter::Create("s3://b", nullptr), ConfigError);
  EXPECT_THROW(Substituter::Create("s3://b?profile=nope", &http), ConfigError);

  ScopedEnv id("AWS_ACCESS_KEY_ID", "AKID");
  ScopedEnv secret("AWS_SECRET_ACCESS_KEY", "s");
  auto signed_sub = Substituter::Create("s3://b?region=eu-north-1", &http);
  ASSERT_NE(signed_sub->s3_credentials(), nullptr);
  EXPECT_EQ(signed_sub->s3_region(), "eu-north-1");
  EXPECT_EQ(signed_sub->s3_credentials()->Current()->access_key_id, "AKID");
  // Only s3:// URLs are signed.
  EXPECT_EQ(Substituter::Create("https://b.example", &http)->s3_credentials(), nullptr);
}

TEST_F(AwsEnvTest, CredentialsFollowTheirFile) {
  const std::string file = tmp_.path() + "/credentials";
  WriteFile(file, "[ci]\naws_access_key_id = AKID1\naws_secret_access_key = s1\n");
  auto p = AwsCredentialsProvider::Create("ci", std::chrono::seconds(0));
  ASSERT_NE(p, nullptr);
  auto first = p->Current();
  EXPECT_EQ(first->access_key_id, "AKID1");
  EXPECT_EQ(first->source, file + " [ci]");
  // Replaced as Kubernetes replaces a Secret's files (a new file renamed over the old one).
  WriteFile(file + ".new",
            "[ci]\naws_access_key_id = AKID2\naws_secret_access_key = s2\n"
            "aws_session_token = t2\n");
  ASSERT_EQ(::rename((file + ".new").c_str(), file.c_str()), 0);
  EXPECT_EQ(p->Current()->access_key_id, "AKID2");
  EXPECT_EQ(p->Current()->session_token, "t2");
  EXPECT_EQ(first->access_key_id, "AKID1");  // a request in flight keeps what it signed with
  // Broken or without the profile: the last good keys stay.
  WriteFile(file, "[ci]\naws_access_key_id = AKID3\n");
  EXPECT_EQ(p->Current()->access_key_id, "AKID2");
  WriteFile(file, "[other]\naws_access_key_id = AKID4\naws_secret_access_key = s4\n");
  EXPECT_EQ(p->Current()->access_key_id, "AKID2");
  ASSERT_EQ(::unlink(file.c_str()), 0);
  EXPECT_EQ(p->Current()->access_key_id, "AKID2");
  WriteFile(file, "[ci]\naws_access_key_id = AKID5\naws_secret_access_key = s5\n");
  EXPECT_EQ(p->Current()->access_key_id, "AKID5");

  // Not looked at again before the recheck period has passed.
  auto slow = AwsCredentialsProvider::Create("ci", std::chrono::hours(1));
  WriteFile(file, "[ci]\naws_access_key_id = AKID6\naws_secret_access_key = s6\n");
  EXPECT_EQ(slow->Current()->access_key_id, "AKID5");
  // From the environment: read once.
  ScopedEnv id("AWS_ACCESS_KEY_ID", "AKIDENV");
  ScopedEnv secret("AWS_SECRET_ACCESS_KEY", "senv");
  auto env = AwsCredentialsProvider::Create("", std::chrono::seconds(0));
  EXPECT_EQ(env->Current()->access_key_id, "AKIDENV");
  EXPECT_EQ(env->Current()->file, "");
  EXPECT_THROW(AwsCredentialsProvider::Create("missing", std::chrono::seconds(0)), ConfigError);
}

TEST_F(AwsEnvTest, TheSameBucketTwiceIsUsedOnceAndSaysSo) {
  WriteFile(tmp_.path() + "/credentials",
            "[a]\naws_access_key_id = A\naws_secret_access_key = s\n"
            "[b]\naws_access_key_id = B\naws_secret_access_key = t\n");
  SetLogLevel(LogLevel::kWarn);
  FetchOptions o;
  o.substituters = {"s3://one?region=x&profile=a", "s3://one?region=x&profile=b",
                    "s3://two?region=x"};
  ::testing::internal::CaptureStderr();
  auto f = Fetcher::Create(o);
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find("substituter s3://one?region=x&profile=b is https://one.s3.x.amazonaws.com, "
                     "as an earlier one is: ignored"),
            std::string::npos)
      << log;
  EXPECT_EQ(log.find("s3://two"), std::string::npos) << log;
}

// A cache served as bucket "nix-cache" in region "eu-test-1" by a server that checks signatures.
class S3FetchTest : public AwsEnvTest {
 protected:
  void SetUp() override {
    SetLogLevel(LogLevel::kError);
    // The bucket's objects are the cache's files.
    cache_ = std::make_unique<TestCache>(tmp_.path() + "/bucket", 30);
    NarTree tree = NarTree::Directory(
        {{"bin", NarTree::Directory({{"hello", NarTree::File("#!/bin/sh\necho hi\n", true)}})},
         {"data", NarTree::File(std::string(300000, 'x') + "end")}});
    info_ = cache_->Add("s3-hello", tree, &key_, "zstd");
    nar_ = WriteNar(tree);
  }
  std::string ServerConfig(const std::string& token = "") const {
    std::string j = R"({"bucket": "nix-cache", "region": "eu-test-1", "access_key": "AKIDTEST",)"
                    R"( "secret_key": "test/secret+key")";
    if (!token.empty()) j += R"(, "session_token": ")" + token + "\"";
    return j + "}";
  }
  // Fetches info_ through `s3_url` (with {PORT} replaced); the NAR when it is found.
  std::optional<std::string> Fetch(const FaultServerProcess& server, std::string s3_url) {
    s3_url.replace(s3_url.find("{PORT}"), 6, std::to_string(server.port()));
    FetchOptions o;
    o.substituters = {s3_url};
    o.trusted_keys.Add(key_.ToPublicKey());
    o.retry_base_delay_s = 0.02;
    auto f = Fetcher::Create(o);
    std::shared_ptr<const PathInfo> path;
    try {
      path = f->Query(info_.store_path.hash_part());
    } catch (const TransientError&) {  // the bucket refused: "cannot be asked", not "absent"
    }
    if (!path) return std::nullopt;
    RebuildSink sink;
    f->FetchNar(*path, sink);
    return sink.Nar();
  }
  // The S3 verdicts ("ok" or an S3 error code) of the cache requests the server saw.
  static std::string Verdicts(const FaultServerProcess& server) {
    std::string out;
    for (const auto& e : nlohmann::json::parse(server.Log())) {
      out += e["s3"].get<std::string>() + " " + std::to_string(e["status"].get<int>()) + " " +
             e["path"].get<std::string>() + "\n";
    }
    return out;
  }
  SecretKey key_ = SecretKey::Generate("test-key-1");
  std::unique_ptr<TestCache> cache_;
  NarInfo info_;
  std::string nar_;
};

constexpr char kUrl[] = "s3://nix-cache?endpoint=127.0.0.1:{PORT}&scheme=http&region=eu-test-1";

TEST_F(S3FetchTest, SignedRequestsFetchAndVerify) {
  FaultServerProcess server(cache_->dir(), "[]", ServerConfig());
  ScopedEnv id("AWS_ACCESS_KEY_ID", "AKIDTEST");
  ScopedEnv secret("AWS_SECRET_ACCESS_KEY", "test/secret+key");
  EXPECT_TRUE(Fetch(server, kUrl) == nar_);
  const std::string v = Verdicts(server);
  EXPECT_NE(v.find("ok 200 /nix-cache/nix-cache-info\n"), std::string::npos) << v;
  EXPECT_NE(v.find("ok 200 /nix-cache/" + std::string(info_.store_path.hash_part()) + ".narinfo\n"),
            std::string::npos)
      << v;
  EXPECT_NE(v.find("ok 200 /nix-cache/nar/"), std::string::npos) << v;
}

TEST_F(S3FetchTest, SessionTokenAndProfileFromTheCredentialsFile) {
  FaultServerProcess server(cache_->dir(), "[]", ServerConfig("tok/en=="));
  WriteFile(tmp_.path() + "/credentials",
            "[builders]\naws_access_key_id = AKIDTEST\naws_secret_access_key = test/secret+key\n"
            "aws_session_token = tok/en==\n");
  EXPECT_TRUE(Fetch(server, std::string(kUrl) + "&profile=builders") == nar_);
  EXPECT_EQ(Verdicts(server).find("Invalid"), std::string::npos) << Verdicts(server);
}

TEST_F(S3FetchTest, ResumesASignedDownloadWithRange) {
  // The NAR download is cut short once; the retry carries a Range header and a fresh signature.
  FaultServerProcess server(cache_->dir(), R"([{"path": "^/nar/", "truncate": 40, "times": 1}])",
                            ServerConfig());
  ScopedEnv id("AWS_ACCESS_KEY_ID", "AKIDTEST");
  ScopedEnv secret("AWS_SECRET_ACCESS_KEY", "test/secret+key");
  EXPECT_TRUE(Fetch(server, kUrl) == nar_);
  EXPECT_NE(Verdicts(server).find("ok 206 /nix-cache/nar/"), std::string::npos) << Verdicts(server);
}

TEST_F(S3FetchTest, WrongOrMissingCredentialsAreRefused) {
  FaultServerProcess server(cache_->dir(), "[]", ServerConfig());
  {
    ScopedEnv id("AWS_ACCESS_KEY_ID", "AKIDTEST");
    ScopedEnv secret("AWS_SECRET_ACCESS_KEY", "wrong");
    EXPECT_EQ(Fetch(server, kUrl), std::nullopt);
  }
  EXPECT_NE(Verdicts(server).find("SignatureDoesNotMatch 403 /nix-cache/nix-cache-info"),
            std::string::npos)
      << Verdicts(server);
  {
    ScopedEnv id("AWS_ACCESS_KEY_ID", "AKIDTEST");
    ScopedEnv secret("AWS_SECRET_ACCESS_KEY", "test/secret+key");
    EXPECT_EQ(Fetch(server, "s3://nix-cache?endpoint=127.0.0.1:{PORT}&scheme=http&region=x"),
              std::nullopt);
  }
  EXPECT_NE(Verdicts(server).find("AuthorizationHeaderMalformed 400"), std::string::npos)
      << Verdicts(server);
  EXPECT_EQ(Fetch(server, kUrl), std::nullopt);  // unsigned
  EXPECT_NE(Verdicts(server).find("AccessDenied 403"), std::string::npos) << Verdicts(server);
}

TEST_F(S3FetchTest, ARefusedBucketIsAskedAgainAfterTheCooldown) {
  // 403 to wrong or not yet rotated keys does not disable the substituter (as a 403 from an
  // HTTP cache's nix-cache-info does): the credentials file may be fixed meanwhile.
  FaultServerProcess server(cache_->dir(), "[]", ServerConfig());
  ScopedEnv id("AWS_ACCESS_KEY_ID", "AKIDTEST");
  ScopedEnv secret("AWS_SECRET_ACCESS_KEY", "wrong");
  FetchOptions o;
  std::string url = kUrl;
  url.replace(url.find("{PORT}"), 6, std::to_string(server.port()));
  o.substituters = {url};
  o.trusted_keys.Add(key_.ToPublicKey());
  o.download_attempts = 1;
  auto f = Fetcher::Create(o);
  EXPECT_THROW(f->Query(info_.store_path.hash_part()), TransientError);
  const auto asked = [&] {
    const std::string v = Verdicts(server);
    return std::count(v.begin(), v.end(), '\n');
  };
  EXPECT_EQ(asked(), 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  EXPECT_THROW(f->Query(info_.store_path.hash_part()), TransientError);
  EXPECT_EQ(asked(), 2) << Verdicts(server);
}

TEST_F(S3FetchTest, RedirectsAreNotFollowedWithTheSessionToken) {
  // A bucket (or something posing as one) redirects: libcurl would send the session token along.
  FaultServerProcess elsewhere(cache_->dir());
  FaultServerProcess server(
      cache_->dir(),
      R"([{"path": "nix-cache-info", "status": 307, "location": ")" + elsewhere.url() + R"(/x"}])",
      ServerConfig("tok"));
  ScopedEnv id("AWS_ACCESS_KEY_ID", "AKIDTEST");
  ScopedEnv secret("AWS_SECRET_ACCESS_KEY", "test/secret+key");
  ScopedEnv token("AWS_SESSION_TOKEN", "tok");
  EXPECT_EQ(Fetch(server, kUrl), std::nullopt);
  EXPECT_NE(Verdicts(server).find("ok 307 /nix-cache/nix-cache-info"), std::string::npos)
      << Verdicts(server);
  EXPECT_EQ(elsewhere.Log(), "[]");
}

}  // namespace
}  // namespace nls
