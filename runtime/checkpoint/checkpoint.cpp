#include "runtime/checkpoint/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "runtime/common/error.h"
#include "runtime/common/log.h"

namespace tandem::checkpoint {
namespace {

namespace fs = std::filesystem;
constexpr char kMagic[] = "TANDEM-CHECKPOINT 1\n";
constexpr std::size_t kMagicSize = sizeof kMagic - 1;
constexpr std::uint64_t kMaxManifest = 64ull << 20;

const char* dtypeName(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32: return "float32";
    case torch::kInt64: return "int64";
    case torch::kUInt8: return "uint8";
    default: break;
  }
  throw InvariantError(std::string("checkpoint cannot hold ") + c10::toString(t) + " tensors");
}

torch::ScalarType dtypeFrom(const std::string& name, const std::string& path) {
  if (name == "float32") return torch::kFloat32;
  if (name == "int64") return torch::kInt64;
  if (name == "uint8") return torch::kUInt8;
  throw Error("'" + path + "': unknown dtype '" + name + "'");
}

void writeAll(int fd, const void* data, std::size_t size, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error("cannot write '" + path + "': " + std::strerror(errno));
    }
    p += n;
    size -= static_cast<std::size_t>(n);
  }
}

std::uint32_t crc(const void* data, std::size_t size) {
  return static_cast<std::uint32_t>(::crc32(0L, static_cast<const Bytef*>(data), static_cast<uInt>(size)));
}

}  // namespace

CheckpointStore::CheckpointStore(std::string directory, int keep) : directory_(std::move(directory)), keep_(keep) {
  TANDEM_ENFORCE(keep_ >= 1);
}

std::string CheckpointStore::pathFor(std::uint64_t step) const {
  char name[40];
  std::snprintf(name, sizeof name, "ckpt-%012llu.tnd", static_cast<unsigned long long>(step));
  return (fs::path(directory_) / name).string();
}

std::string CheckpointStore::save(const Checkpoint& c) {
  std::error_code ec;
  fs::create_directories(directory_, ec);
  if (ec) throw Error("cannot create checkpoint directory '" + directory_ + "': " + ec.message());
  nlohmann::json manifest = {{"role", c.role},
                             {"run_name", c.run_name},
                             {"step", c.step},
                             {"epoch", c.epoch},
                             {"batch", c.batch},
                             {"split", c.split},
                             {"staleness", c.staleness},
                             {"codec", c.codec},
                             {"updates", c.updates},
                             {"loss_sum", c.loss_sum},
                             {"correct", c.correct},
                             {"samples", c.samples},
                             {"steps", c.steps},
                             {"epoch_seconds", c.epoch_seconds},
                             {"optimizer_layout", c.optimizer_layout},
                             {"history", nlohmann::json::parse(telemetry::historyToJson(c.history))}};
  std::vector<torch::Tensor> contiguous;
  std::uint64_t offset = 0;
  nlohmann::json tensors = nlohmann::json::array();
  for (const auto& t : c.tensors) {
    auto ct = t.detach().to(torch::kCPU).contiguous();
    const auto bytes = static_cast<std::uint64_t>(ct.numel()) * ct.element_size();
    tensors.push_back({{"dtype", dtypeName(ct.scalar_type())},
                       {"shape", ct.sizes().vec()},
                       {"offset", offset},
                       {"bytes", bytes},
                       {"crc32", crc(ct.data_ptr(), bytes)}});
    offset += bytes;
    contiguous.push_back(ct);
  }
  manifest["tensors"] = tensors;
  const std::string text = manifest.dump();
  const std::uint64_t length = text.size();
  const std::uint32_t text_crc = crc(text.data(), text.size());

  const std::string path = pathFor(c.step);
  const std::string temp = path + ".tmp";
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw Error("cannot write '" + temp + "': " + std::strerror(errno));
  try {
    writeAll(fd, kMagic, kMagicSize, temp);
    writeAll(fd, &length, sizeof length, temp);
    writeAll(fd, &text_crc, sizeof text_crc, temp);
    writeAll(fd, text.data(), text.size(), temp);
    for (const auto& t : contiguous) {
      writeAll(fd, t.data_ptr(), static_cast<std::size_t>(t.numel()) * t.element_size(), temp);
    }
    if (::fsync(fd) != 0) throw Error("cannot fsync '" + temp + "': " + std::strerror(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(temp.c_str());
    throw;
  }
  ::close(fd);
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    ::unlink(temp.c_str());
    throw Error("cannot rename '" + temp + "': " + std::strerror(errno));
  }
  // Make the rename itself durable.
  if (const int dir = ::open(directory_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
  // Keep the newest `keep` files (and drop stray temporaries).
  std::vector<std::pair<std::uint64_t, fs::path>> files;
  for (const auto& entry : fs::directory_iterator(directory_, ec)) {
    const auto name = entry.path().filename().string();
    if (name.rfind("ckpt-", 0) != 0) continue;
    if (name.size() > 4 && name.substr(name.size() - 4) == ".tmp") {
      if (entry.path() != fs::path(temp)) fs::remove(entry.path(), ec);
      continue;
    }
    try {
      files.emplace_back(std::stoull(name.substr(5)), entry.path());
    } catch (...) {
    }
  }
  std::sort(files.begin(), files.end());
  for (std::size_t i = 0; i + static_cast<std::size_t>(keep_) < files.size(); ++i) fs::remove(files[i].second, ec);
  return path;
}

Checkpoint CheckpointStore::load(std::uint64_t step) const {
  const std::string path = pathFor(step);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read checkpoint '" + path + "': " + std::strerror(errno));
  in.seekg(0, std::ios::end);
  const auto size = static_cast<std::uint64_t>(in.tellg());
  in.seekg(0);
  const auto fail = [&](const std::string& why) -> Error { return Error("checkpoint '" + path + "' " + why); };
  char magic[kMagicSize];
  std::uint64_t length = 0;
  std::uint32_t text_crc = 0;
  if (size < kMagicSize + 12 || !in.read(magic, kMagicSize) || std::memcmp(magic, kMagic, kMagicSize) != 0) {
    throw fail("is not a Tandem checkpoint (bad magic or truncated header)");
  }
  in.read(reinterpret_cast<char*>(&length), sizeof length);
  in.read(reinterpret_cast<char*>(&text_crc), sizeof text_crc);
  const std::uint64_t data_start = kMagicSize + 12 + length;
  if (length > kMaxManifest || data_start > size) throw fail("is truncated (manifest of " + std::to_string(length) + " bytes)");
  std::string text(length, '\0');
  in.read(text.data(), static_cast<std::streamsize>(length));
  if (crc(text.data(), text.size()) != text_crc) throw fail("has a corrupt manifest (CRC mismatch)");
  nlohmann::json m;
  try {
    m = nlohmann::json::parse(text);
    Checkpoint c;
    c.role = m.at("role");
    c.run_name = m.at("run_name");
    c.step = m.at("step");
    c.epoch = m.at("epoch");
    c.batch = m.at("batch");
    c.split = m.at("split");
    c.staleness = m.at("staleness");
    c.codec = m.at("codec");
    c.updates = m.at("updates");
    c.loss_sum = m.at("loss_sum");
    c.correct = m.at("correct");
    c.samples = m.at("samples");
    c.steps = m.at("steps");
    c.epoch_seconds = m.at("epoch_seconds");
    c.optimizer_layout = m.at("optimizer_layout").get<std::vector<std::uint32_t>>();
    // Files of the first format kept the history inside an "extra" object.
    const auto& history = m.contains("history") ? m.at("history") : m.at("extra").at("history");
    c.history = telemetry::historyFromJson(history.dump());
    if (c.step != step) throw fail("holds step " + std::to_string(c.step) + ", its name says " + std::to_string(step));
    for (const auto& t : m.at("tensors")) {
      const auto type = dtypeFrom(t.at("dtype"), path);
      const auto shape = t.at("shape").get<std::vector<std::int64_t>>();
      const std::uint64_t offset = t.at("offset");
      const std::uint64_t bytes = t.at("bytes");
      std::uint64_t numel = 1;
      for (auto d : shape) {
        if (d < 0) throw fail("has a negative dimension");
        numel *= static_cast<std::uint64_t>(d);
      }
      if (numel * torch::elementSize(type) != bytes) throw fail("has a tensor whose size does not match its shape");
      if (data_start + offset + bytes > size) throw fail("is truncated (tensor data past the end of the file)");
      auto tensor = torch::empty(shape, type);
      in.seekg(static_cast<std::streamoff>(data_start + offset));
      if (!in.read(static_cast<char*>(tensor.data_ptr()), static_cast<std::streamsize>(bytes))) {
        throw fail("is truncated");
      }
      if (crc(tensor.data_ptr(), bytes) != t.at("crc32").get<std::uint32_t>()) {
        throw fail("has corrupt tensor data (CRC mismatch)");
      }
      c.tensors.push_back(tensor);
    }
    return c;
  } catch (const nlohmann::json::exception& e) {
    throw fail(std::string("has a malformed manifest: ") + e.what());
  }
}

std::vector<std::uint64_t> CheckpointStore::validSteps() const {
  std::vector<std::uint64_t> steps;
  std::error_code ec;
  if (!fs::is_directory(directory_, ec)) return steps;
  for (const auto& entry : fs::directory_iterator(directory_, ec)) {
    const auto name = entry.path().filename().string();
    if (name.rfind("ckpt-", 0) != 0 || name.size() < 9 || name.substr(name.size() - 4) != ".tnd") continue;
    std::uint64_t step = 0;
    try {
      step = std::stoull(name.substr(5));
      load(step);
      steps.push_back(step);
    } catch (const std::exception& e) {
      log::get("checkpoint")->warn("skipping {}: {}", entry.path().string(), e.what());
    }
  }
  std::sort(steps.begin(), steps.end());
  return steps;
}

}  // namespace tandem::checkpoint
