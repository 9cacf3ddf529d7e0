// libFuzzer target for what configures a substituter: its URL (Substituter::Create, including
// s3:// URLs and their query parameters) and the AWS shared credentials file
// (ParseAwsCredentialsFile). The first line of the input is the URL, the rest the file; its
// profile "default" and one named by the URL's first query value are looked up. Any input may be
// rejected with an nls::Error; nothing else may happen. No file is read: the credentials file
// the URL could name does not exist, and no AWS variable is set.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "fetch/aws_credentials.h"
#include "fetch/error.h"
#include "fetch/http_client.h"
#include "fetch/substituter.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static nls::HttpClient* const http = [] {
    ::setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/nls-fuzz/credentials", 1);
    for (const char* v : {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"}) {
      ::unsetenv(v);
    }
    static nls::HttpClient client({});
    return &client;
  }();
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const size_t nl = text.find('\n');
  const std::string_view url = text.substr(0, nl);
  const std::string_view file = nl == std::string_view::npos ? "" : text.substr(nl + 1);
  try {
    auto sub = nls::Substituter::Create(url, http);
    (void)sub->Resolve("nar/x.nar.xz");
  } catch (const nls::Error&) {
  }
  const size_t eq = url.find('=');
  const std::string_view profile =
      eq == std::string_view::npos ? "x" : url.substr(eq + 1, url.find('&', eq) - eq - 1);
  for (std::string_view p : {std::string_view("default"), profile}) {
    try {
      (void)nls::ParseAwsCredentialsFile(file, p, "fuzz");
    } catch (const nls::Error&) {
    }
  }
  return 0;
}
