#pragma once
// The LibTorch headers precompiled once for the whole build. Sources still include the
// narrow headers they need, so the build also works with TANDEM_USE_PCH=OFF.
#include <ATen/ATen.h>
#include <torch/nn.h>
#include <torch/optim.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <map>
#include <memory>
#include <string>
#include <vector>
