// README.md's config key table is generated from the schema (runtime/config/schema.h);
// this fails when someone edits one without the other.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "runtime/config/schema.h"

namespace tandem::config {
namespace {

TEST(ReadmeKeys, TableMatchesTheSchema) {
  std::ifstream in("README.md");  // ctest runs in the source root
  ASSERT_TRUE(in) << "README.md not found in the working directory";
  std::stringstream text;
  text << in.rdbuf();
  const std::string readme = text.str();
  ASSERT_NE(readme.find(kKeyTableBegin), std::string::npos) << "README.md lacks " << kKeyTableBegin;
  EXPECT_TRUE(replaceKeyTable(readme) == readme)
      << "README.md's config key table differs from the schema (runtime/config/schema.cpp); regenerate it with:\n"
         "  ninja -C build tandem_config_keys && build/trainers/tandem_config_keys --update README.md";
}

}  // namespace
}  // namespace tandem::config
