#pragma once
// The builtin architectures, one file each. Each returns the model's stages; see the file
// for the stage boundaries.

#include <vector>

#include "runtime/models/stage_model.h"

namespace tandem::models::zoo {

std::vector<Stage> mlp(const ModelSpec& spec);
std::vector<Stage> cnn(const ModelSpec& spec);
std::vector<Stage> resnet18(const ModelSpec& spec);
std::vector<Stage> vgg11(const ModelSpec& spec);
std::vector<Stage> mobilenetv2(const ModelSpec& spec);

}  // namespace tandem::models::zoo
