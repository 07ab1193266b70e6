// SHA-256 (FIPS 180-4), to check that an engine is the file its sidecar describes
// (the sidecar's "engine_sha256"), without a crypto library.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "gear_trt/deploy_meta.hpp"

namespace gear_trt {

// Lower-case hex digest of `size` bytes.
std::string sha256_hex(const void* data, std::size_t size);

// Lower-case hex digest of a file's contents; throws gear_trt::Error if it cannot be read.
std::string sha256_file(const std::string& path);

// Throws gear_trt::Error when the sidecar records an engine_sha256 that `artifact` does not have
// (e.g. model.engine was rebuilt or replaced, but an old model.engine.json was kept).
void verify_artifact_hash(const std::string& artifact, const DeployMeta& meta);

}  // namespace gear_trt
