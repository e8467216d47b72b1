// Precompiled header for rookery_ml: third-party headers only.
#pragma once
#include <torch/torch.h>
#include <torch/script.h>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/imgcodecs.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>
#include <memory>
