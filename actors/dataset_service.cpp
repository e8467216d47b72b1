#include "actors/dataset_service.hpp"

#include <filesystem>

#include <caf/all.hpp>

#include "common/config.hpp"
#include "common/log.hpp"
#include "messages/registration.hpp"

namespace rookery {

namespace {

dataset_record record_of(const data::dataset_info& d) {
  dataset_record r;
  r.name = d.name;
  r.kind = d.kind;
  r.source = d.source;
  r.format = d.format;
  r.owner_id = d.owner_id;
  r.classes = d.classes;
  r.columns = d.columns;
  r.train_size = d.train_size;
  r.test_size = d.test_size;
  r.item_shape = d.item_shape;
  r.available = d.available;
  r.status = d.status;
  r.created_at = d.created_at;
  return r;
}

} // namespace

data::dataset_paths dataset_paths_of(const config& cfg) {
  data::dataset_paths p;
  p.data_dir = cfg.data;
  p.fashion_mnist_dir = cfg.fashion_mnist_dir;
  p.fortunes_dir = cfg.fortunes_dir;
  p.wordnet_dir = cfg.wordnet_dir;
  return p;
}

dataset_actor::behavior_type
dataset_service_impl(dataset_actor::stateful_pointer<dataset_service_state> self,
                     data::dataset_paths paths, uint64_t max_bytes) {
  self->state.paths = std::move(paths);
  self->state.max_bytes = max_bytes;
  return {
    [=](list_atom, const principal& who) {
      std::vector<dataset_record> out;
      for (auto& d : data::list_datasets(self->state.paths, who.user_id, who.is_admin))
        out.push_back(record_of(d));
      return out;
    },
    [=](caf::get_atom, const principal& who, const std::string& name) -> caf::result<dataset_record> {
      auto d = data::find_dataset(self->state.paths, name, who.user_id, who.is_admin);
      if (!d)
        return to_error(d.error());
      return record_of(*d);
    },
    [=](caf::put_atom, const principal& who, const dataset_upload& up) -> caf::result<dataset_record> {
      data::import_options o;
      o.name = up.name;
      o.format = up.format;
      o.owner_id = who.user_id;
      o.image_size = up.image_size;
      o.channels = up.channels;
      o.test_fraction = up.test_fraction;
      o.max_bytes = self->state.max_bytes;
      auto d = data::import_dataset(self->state.paths, up.file, o);
      std::error_code ec;
      std::filesystem::remove(up.file, ec);
      if (!d)
        return to_error(d.error());
      log::info("dataset {}: imported for user {} ({} train / {} test items)", d->name,
                who.user_id, d->train_size, d->test_size);
      return record_of(*d);
    },
    [=](caf::delete_atom, const principal& who, const std::string& name) -> caf::result<caf::ok_atom> {
      if (auto st = data::remove_dataset(self->state.paths, name, who.user_id, who.is_admin); !st)
        return to_error(st.error());
      return caf::ok_atom::value;
    },
  };
}

} // namespace rookery
