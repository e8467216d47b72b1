// Precompiled header for unit tests: third-party headers only.
// Torch pulls in glog, whose CHECK(cond) macro would shadow Catch's: include
// torch first, drop glog's CHECK, then Catch.
#pragma once
#include <torch/torch.h>
#include <opencv2/core.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>
#undef CHECK
#include <catch2/catch.hpp>
