#pragma once
// Small string helpers shared across the runtime.

#include <string>
#include <string_view>
#include <vector>

namespace tandem {

// Edit distance: insert, delete, substitute and swap of adjacent characters cost 1.
std::size_t editDistance(std::string_view a, std::string_view b);

// The candidate closest to `word` when it is plausibly a typo of it (distance at most a
// third of the word's length, at least 1, or one is a prefix of the other); empty if none.
std::string closestMatch(std::string_view word, const std::vector<std::string>& candidates);

// "a, b, c"
std::string join(const std::vector<std::string>& items, std::string_view separator = ", ");

std::vector<std::string> split(std::string_view text, char separator);

// Human-readable byte count: "1.5 MiB".
std::string formatBytes(double bytes);

}  // namespace tandem
