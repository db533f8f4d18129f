#pragma once
// The file format of the protocol fuzz corpus (tests/fuzz/corpus/protocol), which the
// hostile-peer tools replay as raw messages: byte 0 is the frame count (mod 9), then each
// frame as a 4-byte little-endian length and its bytes (a length past the end of the file
// is cut there). Header-only: tests read it without linking the runtime.

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace tandem::transport {

// The frames of one corpus file's bytes.
inline std::vector<std::string> corpusFrames(const std::string& bytes) {
  std::vector<std::string> frames;
  if (bytes.empty()) return frames;
  std::size_t pos = 1;
  for (int i = 0; i < static_cast<unsigned char>(bytes[0]) % 9 && pos + 4 <= bytes.size(); ++i) {
    std::uint32_t length = 0;
    std::memcpy(&length, bytes.data() + pos, 4);
    pos += 4;
    frames.push_back(bytes.substr(pos, length));
    pos += length;
  }
  return frames;
}

// Every message (one per file, with at least one frame) of the corpus in `dir`; none when
// `dir` is not a directory.
inline std::vector<std::vector<std::string>> readFrameCorpus(const std::string& dir) {
  std::vector<std::vector<std::string>> out;
  std::error_code ec;
  if (dir.empty() || !std::filesystem::is_directory(dir, ec)) return out;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    std::ifstream in(entry.path(), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto frames = corpusFrames(bytes);
    if (!frames.empty()) out.push_back(std::move(frames));
  }
  return out;
}

// A fuzzing step for a flood of bad messages: one to four random edits of `frames` (a
// byte appended, a frame cut short, a byte changed). `rng` is a std:: random engine.
template <typename Rng>
void mutateFrames(std::vector<std::string>& frames, Rng& rng) {
  if (frames.empty()) return;
  for (int e = 1 + static_cast<int>(rng() % 4); e > 0; --e) {
    auto& f = frames[rng() % frames.size()];
    if (f.empty() || rng() % 5 == 0) {
      f.push_back(static_cast<char>(rng()));
    } else if (rng() % 4 == 0) {
      f.resize(rng() % f.size());
    } else {
      f[rng() % f.size()] = static_cast<char>(rng());
    }
  }
}

}  // namespace tandem::transport
