#pragma once
// A test of the trainers' command line: runs edge_trainer / cloud_trainer with configs
// written into the test's own temporary directory.

#include <string>

#include "tests/common/temp_dir_test.h"
#include "tests/trainers/process.h"

namespace tandem::testing {

class CliTest : public TempDirTest {
 protected:
  ProcessResult edge(const std::string& args) { return runCommand(std::string(EDGE_TRAINER) + " " + args); }
  ProcessResult cloud(const std::string& args) { return runCommand(std::string(CLOUD_TRAINER) + " " + args); }
};

}  // namespace tandem::testing
