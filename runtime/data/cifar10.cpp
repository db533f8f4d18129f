#include <torch/types.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "runtime/common/error.h"
#include "runtime/data/dataset.h"

namespace tandem::data {
namespace {

constexpr std::int64_t kRecordBytes = 1 + 3 * 32 * 32;  // label byte, then R, G, B planes

void readBatchFile(const std::string& path, std::vector<std::uint8_t>& pixels, std::vector<std::int64_t>& labels) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) throw DataError("cannot open '" + path + "': " + ec.message());
  if (size == 0 || size % kRecordBytes != 0) {
    throw DataError("'" + path + "' is truncated or corrupt: " + std::to_string(size) +
                    " bytes is not a whole number of 3073-byte CIFAR-10 records");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError("cannot open '" + path + "': " + std::strerror(errno));
  std::vector<std::uint8_t> bytes(size);
  if (!in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size))) {
    throw DataError("cannot read '" + path + "'");
  }
  const std::size_t records = size / kRecordBytes;
  for (std::size_t r = 0; r < records; ++r) {
    const std::uint8_t* rec = &bytes[r * kRecordBytes];
    if (rec[0] > 9) {
      throw DataError("'" + path + "': record " + std::to_string(r) + " has label " + std::to_string(rec[0]) +
                      ", outside 0..9 (not a CIFAR-10 binary file?)");
    }
    labels.push_back(rec[0]);
    pixels.insert(pixels.end(), rec + 1, rec + kRecordBytes);
  }
}

}  // namespace

std::unique_ptr<Dataset> loadCifar10(const std::string& directory, Split split, bool normalize) {
  std::vector<std::string> files;
  if (split == Split::kTrain) {
    for (int i = 1; i <= 5; ++i) {
      const std::string path = directory + "/data_batch_" + std::to_string(i) + ".bin";
      if (std::filesystem::exists(path)) files.push_back(path);
    }
    if (files.empty()) {
      throw DataError("no CIFAR-10 training files in '" + directory +
                      "' (expected data_batch_1.bin .. data_batch_5.bin, binary version)");
    }
  } else {
    files.push_back(directory + "/test_batch.bin");
  }
  std::vector<std::uint8_t> pixels;
  std::vector<std::int64_t> labels;
  for (const auto& f : files) readBatchFile(f, pixels, labels);
  const auto n = static_cast<std::int64_t>(labels.size());
  auto images = torch::from_blob(pixels.data(), {n, 3, 32, 32}, torch::kUInt8).clone();
  auto label_tensor = torch::tensor(labels, torch::kInt64);
  auto info = cifar10Info(normalize);
  return std::make_unique<TensorDataset>(info, std::move(images), std::move(label_tensor), info.mean, info.std);
}

}  // namespace tandem::data
