// Compiled only to produce the precompiled header (runtime/common/torch_pch.h).
