// Precompiled header for unit tests: third-party headers only.
#pragma once
#include <catch2/catch.hpp>
#include <torch/torch.h>
#include <opencv2/core.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>
