// Registers the ResNet family (models/resnet.hpp) in the zoo: resnet18..152,
// resnext50_32x4d, resnext101_32x8d, resnext101_64x4d, wide_resnet50_2,
// wide_resnet101_2.
#include "models/resnet.hpp"
#include "models/zoo/classic_util.hpp"
#include "models/zoo/families.hpp"

namespace rookery::zoo {

void register_resnet_models() {
  for (const auto& name : resnet_archs()) {
    model_entry e;
    e.name = name;
    e.family = "resnet";
    e.default_size = 224;
    e.heavy = name != "resnet18";
    e.make = [name](const model_options& o) -> std::shared_ptr<ZooModelImpl> {
      classic::check_options(o, "resnet", {/*dropout=*/true, /*drop_path=*/true, /*width_mult=*/false});
      ResNetOptions ro;
      ro.arch = name;
      ro.num_classes = o.num_classes;
      ro.in_channels = o.in_channels;
      ro.dropout = o.dropout < 0 ? 0.0 : o.dropout;
      ro.drop_path = o.drop_path;
      return ResNet(ro).ptr();
    };
    register_model(std::move(e));
  }
}

} // namespace rookery::zoo
