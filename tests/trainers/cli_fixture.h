#pragma once
// A test of the trainers' command line: a temporary directory per test (removed after it)
// to write configs into and to run edge_trainer / cloud_trainer in.

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "tests/trainers/process.h"

namespace tandem::testing {

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("tandem_cli_" + std::to_string(::getpid()) + "_" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Writes `text` to `name` in the test's directory; returns its path.
  std::string write(const std::string& name, const std::string& text) {
    const auto path = (dir_ / name).string();
    std::ofstream(path) << text;
    return path;
  }
  static std::string read(const std::filesystem::path& path) {
    std::ifstream in(path);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }

  ProcessResult edge(const std::string& args) { return runCommand(std::string(EDGE_TRAINER) + " " + args); }
  ProcessResult cloud(const std::string& args) { return runCommand(std::string(CLOUD_TRAINER) + " " + args); }

  std::filesystem::path dir_;
};

}  // namespace tandem::testing
