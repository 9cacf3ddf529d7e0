// Parsing of sizes given on the command line ("--cache-size SIZE").
#pragma once

#include <cstdint>
#include <string_view>

namespace nls {

// "1234" (bytes), "512K", "100M", "20G", "1T" (powers of 1024; suffix case-insensitive, an
// optional trailing "B"/"iB" is accepted: "20GiB", "20GB"). Throws ConfigError naming the input
// for anything else (empty, negative, fractions, unknown suffix, overflow).
uint64_t ParseSize(std::string_view text);

}  // namespace nls
