#include "models/state_dict.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <unordered_map>
#include <utility>
#include <vector>

#include <caffe2/serialize/inline_container.h>
#include <torch/nn/module.h>
#include <torch/torch.h>

namespace rookery {

namespace {

// --- a restricted unpickler ---------------------------------------------------
// Just enough of the pickle VM (protocols 2..5) for torch.save'd dicts of
// tensors. Callables are never invoked: REDUCE on a known torch rebuild
// function builds a tensor, OrderedDict() builds a dict, anything else becomes
// an opaque object that is reported if it ends up where a tensor is expected.

struct pyobj;
// Objects live in the unpickler's arena and refer to each other by plain
// pointers: freeing a structure of any depth (or one that contains itself)
// is a flat walk over the arena, never a recursion through destructors.
using pyref = pyobj*;

struct pyobj {
  enum class kind { none, boolean, integer, floating, string, bytes, tuple, list, dict, global, tensor, other };
  kind k = kind::none;
  int64_t i = 0;
  double f = 0;
  std::string s; // string, bytes, global ("module.name"), other (description)
  std::vector<pyref> items;                       // tuple, list
  std::vector<std::pair<pyref, pyref>> entries;   // dict
  at::Tensor t;
  // Nesting depth of the structure below it (1: holds no containers). Exact
  // for acyclic structures because a container already placed inside another
  // is never modified again (see unpickler::insert).
  size_t depth = 1;
  bool contained = false; // placed inside a tuple, list or dict
};

[[noreturn]] void bad(const std::string& what) {
  throw std::runtime_error("malformed pickle: " + what);
}

bool scalar_type_of_storage(const std::string& global, at::ScalarType& out) {
  static const std::map<std::string, at::ScalarType> table{
    {"torch.FloatStorage", at::kFloat},    {"torch.DoubleStorage", at::kDouble},
    {"torch.HalfStorage", at::kHalf},      {"torch.BFloat16Storage", at::kBFloat16},
    {"torch.LongStorage", at::kLong},      {"torch.IntStorage", at::kInt},
    {"torch.ShortStorage", at::kShort},    {"torch.CharStorage", at::kChar},
    {"torch.ByteStorage", at::kByte},      {"torch.BoolStorage", at::kBool},
    {"torch.ComplexFloatStorage", at::kComplexFloat},
    {"torch.ComplexDoubleStorage", at::kComplexDouble},
  };
  auto it = table.find(global);
  if (it == table.end())
    return false;
  out = it->second;
  return true;
}

namespace lim = pickle_limits;

using storage_loader = std::function<at::Tensor(const std::string& key, at::ScalarType, int64_t numel)>;

class unpickler {
public:

  unpickler(const char* data, size_t size, storage_loader load)
      : begin_(data), p_(data), end_(data + size), load_(std::move(load)) {
    if (size > lim::kMaxPickleBytes)
      bad("data.pkl is " + std::to_string(size) + " bytes, more than the " +
          std::to_string(lim::kMaxPickleBytes) + " a weights file may have");
  }

  /// The object STOP returns; it (and everything it refers to) lives as long
  /// as the unpickler.
  pyref run() {
    for (;;) {
      const auto op = u8();
      switch (op) {
        case 0x80: u8(); break;                       // PROTO
        case 0x95: bytes(8); break;                   // FRAME
        case '.':                                     // STOP
          if (stack_.empty())
            bad("empty stack at STOP");
          return stack_.back();
        case 'N': push(make(pyobj::kind::none)); break;
        case 0x88: case 0x89: {                       // NEWTRUE / NEWFALSE
          auto b = make(pyobj::kind::boolean);
          b->i = op == 0x88;
          push(b);
          break;
        }
        case 'J': push(make_int(static_cast<int32_t>(le(4)))); break;   // BININT
        case 'K': push(make_int(static_cast<int64_t>(le(1)))); break;   // BININT1
        case 'M': push(make_int(static_cast<int64_t>(le(2)))); break;   // BININT2
        case 0x8a: push(make_int(long_n(le(1)))); break;                // LONG1
        case 0x8b: push(make_int(long_n(le(4)))); break;                // LONG4
        case 'G': {                                                     // BINFLOAT (big-endian)
          auto b = bytes(8);
          uint64_t bits = 0;
          for (int k = 0; k < 8; ++k)
            bits = (bits << 8) | static_cast<unsigned char>(b[k]);
          auto f = make(pyobj::kind::floating);
          std::memcpy(&f->f, &bits, 8);
          push(f);
          break;
        }
        case 'X': push(make_str(pyobj::kind::string, str(le(4)))); break;     // BINUNICODE
        case 0x8c: push(make_str(pyobj::kind::string, str(le(1)))); break;    // SHORT_BINUNICODE
        case 0x8d: push(make_str(pyobj::kind::string, str(le(8)))); break;    // BINUNICODE8
        case 'T': push(make_str(pyobj::kind::string, str(le(4)))); break;     // BINSTRING
        case 'U': push(make_str(pyobj::kind::string, str(le(1)))); break;     // SHORT_BINSTRING
        case 'B': push(make_str(pyobj::kind::bytes, str(le(4)))); break;      // BINBYTES
        case 'C': push(make_str(pyobj::kind::bytes, str(le(1)))); break;      // SHORT_BINBYTES
        case 0x8e: push(make_str(pyobj::kind::bytes, str(le(8)))); break;     // BINBYTES8
        case 0x96: push(make_str(pyobj::kind::bytes, str(le(8)))); break;     // BYTEARRAY8
        case ')': push(make(pyobj::kind::tuple)); break;                      // EMPTY_TUPLE
        case ']': push(make(pyobj::kind::list)); break;                       // EMPTY_LIST
        case '}': push(make(pyobj::kind::dict)); break;                       // EMPTY_DICT
        case 0x8f: push(make(pyobj::kind::list)); break;                      // EMPTY_SET
        case '(':                                                             // MARK
          if (marks_.size() >= lim::kMaxReferences)
            bad("more than " + std::to_string(lim::kMaxReferences) + " MARKs");
          marks_.push_back(stack_.size());
          break;
        case 't': case 'l': case 0x91: {                                      // TUPLE / LIST / FROZENSET
          auto p = make(op == 't' ? pyobj::kind::tuple : pyobj::kind::list);
          for (auto v : pop_mark())
            insert(p, v);
          push(p);
          break;
        }
        case 0x85: case 0x86: case 0x87: {                                    // TUPLE1..3
          const size_t n = static_cast<size_t>(op - 0x84);
          if (stack_.size() < n || (!marks_.empty() && stack_.size() - n < marks_.back()))
            bad("stack underflow in TUPLEn");
          auto p = make(pyobj::kind::tuple);
          for (auto it = stack_.end() - static_cast<std::ptrdiff_t>(n); it != stack_.end(); ++it)
            insert(p, *it);
          stack_.resize(stack_.size() - n);
          references_ -= n;
          push(p);
          break;
        }
        case 'a': {                                                           // APPEND
          auto v = pop();
          insert(top(pyobj::kind::list), v);
          break;
        }
        case 'e': case 0x90: {                                                // APPENDS / ADDITEMS
          auto vs = pop_mark();
          auto l = top(pyobj::kind::list);
          for (auto v : vs)
            insert(l, v);
          break;
        }
        case 'd': {                                                           // DICT
          auto vs = pop_mark();
          auto d = make(pyobj::kind::dict);
          add_pairs(d, vs);
          push(d);
          break;
        }
        case 's': {                                                           // SETITEM
          auto v = pop();
          auto k = pop();
          insert(top(pyobj::kind::dict), k, v);
          break;
        }
        case 'u': {                                                           // SETITEMS
          auto vs = pop_mark();
          add_pairs(top(pyobj::kind::dict), vs);
          break;
        }
        case 'c': {                                                           // GLOBAL
          auto module = line();
          auto name = line();
          push(make_str(pyobj::kind::global, module + "." + name));
          break;
        }
        case 0x93: {                                                          // STACK_GLOBAL
          auto name = pop();
          auto module = pop();
          if (name->k != pyobj::kind::string || module->k != pyobj::kind::string)
            bad("STACK_GLOBAL expects two strings");
          push(make_str(pyobj::kind::global, module->s + "." + name->s));
          break;
        }
        case 'R': {                                                           // REDUCE
          auto args = pop();
          auto fn = pop();
          push(reduce(fn, args, 0));
          break;
        }
        case 0x81: {                                                          // NEWOBJ
          pop();
          auto cls = pop();
          push(make_str(pyobj::kind::other, "instance of " + describe(cls)));
          break;
        }
        case 0x92: {                                                          // NEWOBJ_EX
          pop();
          pop();
          auto cls = pop();
          push(make_str(pyobj::kind::other, "instance of " + describe(cls)));
          break;
        }
        case 'b': pop(); peek(); break;                                       // BUILD: state ignored
        case 'Q': push(persistent_load(pop())); break;                        // BINPERSID
        case 'q': memo_put(le(1), peek()); break;                             // BINPUT
        case 'r': memo_put(le(4), peek()); break;                             // LONG_BINPUT
        case 0x94: memo_put(memo_.size(), peek()); break;                     // MEMOIZE
        case 'h': push(memo_get(le(1))); break;                               // BINGET
        case 'j': push(memo_get(le(4))); break;                               // LONG_BINGET
        case '0': pop(); break;                                               // POP
        case '2': push(peek()); break;                                        // DUP
        case '1': pop_mark(); break;                                          // POP_MARK
        default: {
          char buf[64];
          std::snprintf(buf, sizeof buf, "unsupported opcode 0x%02x at offset %zu", op,
                        static_cast<size_t>(p_ - begin_ - 1));
          bad(buf);
        }
      }
    }
  }

private:
  // --- the arena and the bounds ---------------------------------------------------
  pyref make(pyobj::kind k) {
    if (arena_.size() >= lim::kMaxObjects)
      bad("more than " + std::to_string(lim::kMaxObjects) + " objects");
    arena_.emplace_back();
    auto p = &arena_.back();
    p->k = k;
    return p;
  }
  pyref make_int(int64_t v) {
    auto p = make(pyobj::kind::integer);
    p->i = v;
    return p;
  }
  pyref make_str(pyobj::kind k, std::string s) {
    auto p = make(k);
    p->s = std::move(s);
    return p;
  }
  void count_reference() {
    if (++references_ > lim::kMaxReferences)
      bad("more than " + std::to_string(lim::kMaxReferences) + " references");
  }
  /// Marks `child` as placed in `parent` and updates `parent`'s depth. A
  /// container that is already inside another one may not change any more
  /// (Python's pickler fills every container before it places it): otherwise
  /// the memo could build a chain of any depth out of shallow insertions.
  void adopt(pyref parent, pyref child) {
    if (parent->contained)
      bad("a " + describe(parent) + " is modified after it was placed inside another container");
    child->contained = true;
    if (child != parent && child->depth + 1 > parent->depth) {
      parent->depth = child->depth + 1;
      if (parent->depth > lim::kMaxDepth)
        bad("containers nested deeper than " + std::to_string(lim::kMaxDepth) + " levels");
    }
    count_reference();
  }
  void insert(pyref container, pyref v) {
    adopt(container, v);
    container->items.push_back(v);
  }
  void insert(pyref dict, pyref k, pyref v) {
    adopt(dict, k);
    adopt(dict, v);
    dict->entries.emplace_back(k, v);
  }

  // --- bytes ---------------------------------------------------------------------------
  uint8_t u8() {
    if (p_ >= end_)
      bad("unexpected end of data");
    return static_cast<uint8_t>(*p_++);
  }
  const char* bytes(uint64_t n) {
    if (n > static_cast<uint64_t>(end_ - p_))
      bad("unexpected end of data");
    auto b = p_;
    p_ += n;
    return b;
  }
  uint64_t le(int n) {
    auto b = bytes(static_cast<uint64_t>(n));
    uint64_t v = 0;
    for (int k = n - 1; k >= 0; --k)
      v = (v << 8) | static_cast<unsigned char>(b[k]);
    return v;
  }
  int64_t long_n(uint64_t n) {
    if (n > 8)
      bad("integer wider than 64 bits");
    if (n == 0)
      return 0;
    auto b = bytes(n);
    uint64_t v = 0;
    for (int k = static_cast<int>(n) - 1; k >= 0; --k)
      v = (v << 8) | static_cast<unsigned char>(b[k]);
    if (n < 8 && (static_cast<unsigned char>(b[n - 1]) & 0x80))
      v |= ~uint64_t{0} << (8 * n); // sign-extend
    return static_cast<int64_t>(v);
  }
  std::string str(uint64_t n) {
    auto b = bytes(n);
    return std::string(b, static_cast<size_t>(n));
  }
  std::string line() {
    auto nl = static_cast<const char*>(std::memchr(p_, '\n', static_cast<size_t>(end_ - p_)));
    if (!nl)
      bad("unterminated GLOBAL");
    std::string s(p_, nl);
    p_ = nl + 1;
    return s;
  }

  // --- the stack, marks and memo ------------------------------------------------------
  void push(pyref v) {
    count_reference();
    stack_.push_back(v);
  }
  pyref pop() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back()))
      bad("stack underflow");
    auto v = stack_.back();
    stack_.pop_back();
    --references_;
    return v;
  }
  pyref peek() {
    if (stack_.empty())
      bad("stack underflow");
    return stack_.back();
  }
  pyref top(pyobj::kind k) {
    auto v = peek();
    if (v->k != k)
      bad("container opcode applied to a " + describe(v));
    return v;
  }
  std::vector<pyref> pop_mark() {
    if (marks_.empty())
      bad("no MARK");
    auto m = marks_.back();
    marks_.pop_back();
    if (m > stack_.size())
      bad("MARK beyond stack");
    std::vector<pyref> out(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    references_ -= out.size();
    return out;
  }
  void memo_put(uint64_t i, pyref v) {
    auto it = memo_.find(i);
    if (it != memo_.end()) {
      it->second = v;
      return;
    }
    if (memo_.size() >= lim::kMaxMemo)
      bad("more than " + std::to_string(lim::kMaxMemo) + " memo entries");
    memo_.emplace(i, v);
  }
  pyref memo_get(uint64_t i) {
    auto it = memo_.find(i);
    if (it == memo_.end())
      bad("memo key " + std::to_string(i) + " not found");
    return it->second;
  }
  void add_pairs(pyref d, const std::vector<pyref>& vs) {
    if (vs.size() % 2)
      bad("odd number of dict items");
    for (size_t k = 0; k < vs.size(); k += 2)
      insert(d, vs[k], vs[k + 1]);
  }

  static std::string describe(const pyref& v) {
    switch (v->k) {
      case pyobj::kind::none: return "None";
      case pyobj::kind::boolean: return "bool";
      case pyobj::kind::integer: return "int";
      case pyobj::kind::floating: return "float";
      case pyobj::kind::string: return "str";
      case pyobj::kind::bytes: return "bytes";
      case pyobj::kind::tuple: return "tuple";
      case pyobj::kind::list: return "list";
      case pyobj::kind::dict: return "dict";
      case pyobj::kind::global: return v->s;
      case pyobj::kind::tensor: return "tensor";
      case pyobj::kind::other: return v->s;
    }
    return "?";
  }

  static std::vector<int64_t> int_tuple(const pyref& v, const char* what) {
    if (v->k != pyobj::kind::tuple && v->k != pyobj::kind::list)
      bad(std::string(what) + " is not a tuple");
    if (v->items.size() > lim::kMaxTensorRank)
      bad(std::string(what) + " has more than " + std::to_string(lim::kMaxTensorRank) + " dimensions");
    std::vector<int64_t> out;
    for (auto& x : v->items) {
      if (x->k != pyobj::kind::integer)
        bad(std::string(what) + " holds a non-integer");
      out.push_back(x->i);
    }
    return out;
  }

  /// `fn(*args)` for the few callables a checkpoint uses; `level` counts the
  /// calls of _rebuild_from_type_v2 that led here (bounded by kMaxDepth:
  /// each one unwraps a level of its arguments, and a list may hold itself).
  pyref reduce(const pyref& fn, const pyref& args, size_t level) {
    if (level > lim::kMaxDepth)
      bad("tensor rebuild calls nested deeper than " + std::to_string(lim::kMaxDepth) + " levels");
    if (fn->k != pyobj::kind::global)
      return make_str(pyobj::kind::other, "result of calling " + describe(fn));
    const auto& name = fn->s;
    const auto& a = args->items;
    if (name == "collections.OrderedDict" || name == "builtins.dict") {
      auto d = make(pyobj::kind::dict);
      // OrderedDict([(k, v), ...]) -- rare; the pickler normally uses SETITEMS.
      if (!a.empty() && (a[0]->k == pyobj::kind::list || a[0]->k == pyobj::kind::tuple))
        for (auto& kv : a[0]->items)
          if ((kv->k == pyobj::kind::tuple || kv->k == pyobj::kind::list) && kv->items.size() == 2)
            insert(d, kv->items[0], kv->items[1]);
      return d;
    }
    // torch::pickle_save (C++) tags typed containers: restore_type_tag(obj, "Dict[str, Tensor]").
    if (name == "torch.jit._pickle.restore_type_tag" && args->k == pyobj::kind::tuple && !a.empty())
      return a[0];
    if (name == "torch._utils._rebuild_tensor_v2" || name == "torch._utils._rebuild_tensor") {
      if (args->k != pyobj::kind::tuple || a.size() < 4 || a[0]->k != pyobj::kind::tensor
          || a[1]->k != pyobj::kind::integer)
        bad(name + " with unexpected arguments");
      auto sizes = int_tuple(a[2], "tensor size");
      auto strides = int_tuple(a[3], "tensor stride");
      if (sizes.size() != strides.size())
        bad("tensor size and stride differ in rank");
      const int64_t offset = a[1]->i;
      const int64_t numel = a[0]->t.numel();
      // Bounds check: the last element reachable must lie inside the storage,
      // and neither the element count nor that index may overflow.
      int64_t last = offset, count = 1;
      for (size_t d = 0; d < sizes.size(); ++d) {
        if (sizes[d] < 0 || strides[d] < 0)
          bad("negative tensor size or stride");
        int64_t span = 0;
        if (__builtin_mul_overflow(count, sizes[d], &count)
            || (sizes[d] > 0 && (__builtin_mul_overflow(sizes[d] - 1, strides[d], &span)
                                 || __builtin_add_overflow(last, span, &last))))
          bad("tensor of more than 2^63 elements");
      }
      if (offset < 0 || (count > 0 && last >= numel))
        bad("tensor view exceeds its storage");
      auto t = make(pyobj::kind::tensor);
      t->t = a[0]->t.as_strided(sizes, strides, offset);
      return t;
    }
    if (name == "torch._utils._rebuild_parameter" || name == "torch._utils._rebuild_parameter_with_state") {
      if (a.empty() || a[0]->k != pyobj::kind::tensor)
        bad(name + " without a tensor");
      return a[0];
    }
    if (name == "torch._tensor._rebuild_from_type_v2" || name == "torch._tensor._rebuild_from_type") {
      // (func, new_type, args, state): the tensor subclass is dropped.
      if (a.size() >= 3)
        return reduce(a[0], a[2], level + 1);
      bad(name + " with unexpected arguments");
    }
    return make_str(pyobj::kind::other, "object built by " + name);
  }

  pyref persistent_load(const pyref& pid) {
    // ('storage', storage_type, key, location, numel)
    if (pid->k != pyobj::kind::tuple || pid->items.size() < 5 || pid->items[0]->k != pyobj::kind::string
        || pid->items[0]->s != "storage")
      bad("unsupported persistent id");
    const auto& type = pid->items[1];
    const auto& key = pid->items[2];
    const auto& numel = pid->items[4];
    at::ScalarType st;
    if (type->k != pyobj::kind::global || !scalar_type_of_storage(type->s, st))
      bad("unsupported storage type " + describe(type));
    if (key->k != pyobj::kind::string || numel->k != pyobj::kind::integer || numel->i < 0)
      bad("bad storage reference");
    auto it = storages_.find(key->s);
    if (it == storages_.end())
      it = storages_.emplace(key->s, load_(key->s, st, numel->i)).first;
    auto t = make(pyobj::kind::tensor);
    t->t = it->second;
    return t;
  }

  const char* begin_;
  const char* p_;
  const char* end_;
  storage_loader load_;
  std::deque<pyobj> arena_; // stable addresses; destroyed flat
  size_t references_ = 0;   // on the stack and in containers
  std::vector<pyref> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, pyref> memo_;
  std::map<std::string, at::Tensor> storages_;
};

// --- reading the archive -------------------------------------------------------

using named_tensors = std::vector<std::pair<std::string, at::Tensor>>;

struct read_result {
  named_tensors tensors;
  std::vector<std::string> non_tensors; // keys whose value is not a tensor
};

std::string first_line(std::string s) {
  auto nl = s.find('\n');
  if (nl != std::string::npos)
    s.resize(nl);
  return s;
}

/// What the zip's central directory says, read before miniz extracts
/// anything: getRecord() allocates a record's declared uncompressed size, so
/// a small deflated file could otherwise ask for gigabytes.
struct zip_census {
  uint64_t records = 0;
  uint64_t total_bytes = 0;  // uncompressed, all records
  uint64_t pickle_bytes = 0; // uncompressed, the largest */data.pkl
};

uint64_t rd_le(const unsigned char* p, int n) {
  uint64_t v = 0;
  for (int k = n - 1; k >= 0; --k)
    v = (v << 8) | p[k];
  return v;
}

/// Reads the central directory the way miniz finds it (the end-of-central-
/// directory record nearest the end of the file, zip64 when flagged).
/// nullopt (with `why`) when it is not a readable zip directory.
std::optional<zip_census> zip_directory(const std::string& path, std::string& why) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    why = "cannot open it";
    return std::nullopt;
  }
  in.seekg(0, std::ios::end);
  const uint64_t size = static_cast<uint64_t>(in.tellg());
  auto read_at = [&](uint64_t off, size_t n, std::vector<unsigned char>& buf) {
    buf.resize(n);
    if (off > size || n > size - off)
      return false;
    in.seekg(static_cast<std::streamoff>(off));
    return static_cast<bool>(in.read(reinterpret_cast<char*>(buf.data()), static_cast<std::streamsize>(n)));
  };
  std::vector<unsigned char> tail, buf;
  const uint64_t tail_len = std::min<uint64_t>(size, 22 + 65535);
  if (size < 22 || !read_at(size - tail_len, tail_len, tail)) {
    why = "it is too short for a zip archive";
    return std::nullopt;
  }
  std::optional<uint64_t> eocd;
  for (uint64_t i = tail_len - 22 + 1; i-- > 0;)
    if (rd_le(&tail[i], 4) == 0x06054b50) {
      eocd = size - tail_len + i;
      break;
    }
  if (!eocd) {
    why = "it has no zip central directory";
    return std::nullopt;
  }
  const unsigned char* e = &tail[*eocd - (size - tail_len)];
  uint64_t entries = rd_le(e + 10, 2), cd_size = rd_le(e + 12, 4), cd_off = rd_le(e + 16, 4);
  if (entries == 0xFFFF || cd_size == 0xFFFFFFFF || cd_off == 0xFFFFFFFF) {
    // zip64: a locator right before the EOCD points at the zip64 EOCD.
    if (*eocd < 20 || !read_at(*eocd - 20, 20, buf) || rd_le(buf.data(), 4) != 0x07064b50) {
      why = "its zip64 directory locator is missing";
      return std::nullopt;
    }
    const uint64_t z = rd_le(buf.data() + 8, 8);
    if (!read_at(z, 56, buf) || rd_le(buf.data(), 4) != 0x06064b50) {
      why = "its zip64 directory is missing";
      return std::nullopt;
    }
    entries = rd_le(buf.data() + 32, 8);
    cd_size = rd_le(buf.data() + 40, 8);
    cd_off = rd_le(buf.data() + 48, 8);
  }
  if (entries > pickle_limits::kMaxRecords) {
    why = "it has " + std::to_string(entries) + " records, more than " +
          std::to_string(pickle_limits::kMaxRecords);
    return std::nullopt;
  }
  if (cd_off > size || cd_size > size - cd_off) {
    why = "its zip central directory lies outside the file";
    return std::nullopt;
  }
  zip_census c;
  uint64_t off = cd_off;
  const std::string pkl = "/data.pkl";
  for (uint64_t n = 0; n < entries; ++n) {
    if (!read_at(off, 46, buf) || rd_le(buf.data(), 4) != 0x02014b50) {
      why = "its zip central directory is corrupt";
      return std::nullopt;
    }
    uint64_t usize = rd_le(buf.data() + 24, 4);
    const uint64_t name_len = rd_le(buf.data() + 28, 2), extra_len = rd_le(buf.data() + 30, 2),
                   comment_len = rd_le(buf.data() + 32, 2);
    std::vector<unsigned char> var;
    if (!read_at(off + 46, static_cast<size_t>(name_len + extra_len), var)) {
      why = "its zip central directory is truncated";
      return std::nullopt;
    }
    if (usize == 0xFFFFFFFF) { // the zip64 extra field holds the real size first
      bool found = false;
      for (uint64_t x = name_len; x + 4 <= name_len + extra_len;) {
        const uint64_t id = rd_le(&var[x], 2), len = rd_le(&var[x + 2], 2);
        if (id == 0x0001 && len >= 8 && x + 4 + 8 <= name_len + extra_len) {
          usize = rd_le(&var[x + 4], 8);
          found = true;
          break;
        }
        x += 4 + len;
      }
      if (!found) {
        why = "a zip64 record lacks its size";
        return std::nullopt;
      }
    }
    const std::string name(var.begin(), var.begin() + static_cast<std::ptrdiff_t>(name_len));
    c.records++;
    c.total_bytes = usize > UINT64_MAX - c.total_bytes ? UINT64_MAX : c.total_bytes + usize;
    if (name.size() >= pkl.size() && name.compare(name.size() - pkl.size(), pkl.size(), pkl) == 0)
      c.pickle_bytes = std::max(c.pickle_bytes, usize);
    off += 46 + name_len + extra_len + comment_len;
  }
  const uint64_t budget = size * pickle_limits::kMaxExpansion + pickle_limits::kExpansionSlack;
  if (c.total_bytes > budget) {
    why = "its records would extract to " + std::to_string(c.total_bytes) + " bytes, more than " +
          std::to_string(pickle_limits::kMaxExpansion) + " times the file's size (plus " +
          std::to_string(pickle_limits::kExpansionSlack) + ")";
    return std::nullopt;
  }
  if (c.pickle_bytes > pickle_limits::kMaxPickleBytes) {
    why = "its data.pkl is " + std::to_string(c.pickle_bytes) + " bytes, more than " +
          std::to_string(pickle_limits::kMaxPickleBytes);
    return std::nullopt;
  }
  return c;
}

/// A storage of `numel` elements of `st` from a record's bytes.
at::Tensor storage_from(const std::string& key, at::ScalarType st, int64_t numel, const void* data,
                        size_t size) {
  const size_t es = c10::elementSize(st);
  if (numel < 0 || static_cast<uint64_t>(numel) > size / es)
    throw std::runtime_error("storage " + key + " holds " + std::to_string(size) + " bytes, needs " +
                             std::to_string(numel) + " elements of " + std::to_string(es) + " bytes");
  auto t = at::empty({numel}, at::TensorOptions().dtype(st));
  if (numel)
    std::memcpy(t.data_ptr(), data, static_cast<size_t>(numel) * es);
  return t;
}

/// Unpickles data.pkl and finds the dict of tensors in it. `where` names the
/// file in messages.
result<read_result> read_pickle(const char* data, size_t size, const storage_loader& load,
                                const std::string& where) {
  unpickler u(data, size, load);
  auto root = u.run();
  if (root->k != pyobj::kind::dict)
    return fail(errc::unprocessable, where + " does not hold a dict of tensors "
                                     "(torch.save(model.state_dict(), path))");
  auto is_tensor_dict = [](const pyobj& d) {
    for (auto& [k, v] : d.entries)
      if (v->k == pyobj::kind::tensor)
        return true;
    return false;
  };
  const pyobj* dict = root;
  if (!is_tensor_dict(*dict)) {
    for (const char* nested : {"state_dict", "model_state_dict", "model"})
      for (auto& [k, v] : root->entries)
        if (k->k == pyobj::kind::string && k->s == nested && v->k == pyobj::kind::dict
            && is_tensor_dict(*v) && dict == root)
          dict = v;
  }
  read_result out;
  for (auto& [k, v] : dict->entries) {
    if (k->k != pyobj::kind::string)
      return fail(errc::unprocessable, where + " has a non-string key");
    if (v->k == pyobj::kind::tensor)
      out.tensors.emplace_back(k->s, v->t);
    else
      out.non_tensors.push_back(k->s);
  }
  return out;
}

result<read_result> read_checkpoint(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    return fail(errc::not_found, "weights file " + path + " does not exist");
  {
    std::ifstream in(path, std::ios::binary);
    char magic[4] = {0, 0, 0, 0};
    if (!in || !in.read(magic, 4))
      return fail(errc::unprocessable, "weights file " + path + " is unreadable or too short");
    if (!(magic[0] == 'P' && magic[1] == 'K' && magic[2] == 3 && magic[3] == 4)) {
      if (static_cast<unsigned char>(magic[0]) == 0x80)
        return fail(errc::unprocessable,
                    "weights file " + path + " uses the legacy (pre-1.6) torch.save format, "
                    "which is not supported; re-save it with a current PyTorch: "
                    "torch.save(torch.load(p), p)");
      return fail(errc::unprocessable,
                  "weights file " + path + " is not a PyTorch checkpoint (no zip header)");
    }
  }
  std::string why;
  if (!zip_directory(path, why))
    return fail(errc::unprocessable, "weights file " + path + " is refused: " + why);
  auto reader = std::make_shared<caffe2::serialize::PyTorchStreamReader>(path);
  if (reader->hasRecord("constants.pkl") || reader->hasRecord("code/__torch__.py"))
    return fail(errc::unprocessable, "weights file " + path + " is a TorchScript archive "
                                     "(torch.jit.save), not a state_dict; use format \"torchscript\"");
  if (!reader->hasRecord("data.pkl"))
    return fail(errc::unprocessable, "weights file " + path + " has no data.pkl record");
  if (reader->hasRecord("byteorder")) {
    auto [ptr, size] = reader->getRecord("byteorder");
    std::string order(static_cast<const char*>(ptr.get()), size);
    if (order != "little")
      return fail(errc::unprocessable, "weights file " + path + " is " + order + "-endian");
  }
  auto [pkl, pkl_size] = reader->getRecord("data.pkl");
  auto load = [&](const std::string& key, at::ScalarType st, int64_t numel) {
    auto [ptr, size] = reader->getRecord("data/" + key);
    return storage_from(key, st, numel, ptr.get(), size);
  };
  return read_pickle(static_cast<const char*>(pkl.get()), pkl_size, load, "weights file " + path);
}

std::string shape_str(at::IntArrayRef s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i)
    out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

std::string join_truncated(const std::vector<std::string>& items, size_t limit = 10) {
  std::string out;
  for (size_t i = 0; i < items.size() && i < limit; ++i)
    out += (i ? ", " : "") + items[i];
  if (items.size() > limit)
    out += ", ... (" + std::to_string(items.size() - limit) + " more)";
  return out;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

} // namespace

status load_state_dict(torch::nn::Module& module, const std::string& path) {
  try {
    auto read = read_checkpoint(path);
    if (!read)
      return read.error();
    auto& file = read->tensors;

    std::vector<std::pair<std::string, at::Tensor>> expected;
    for (auto& item : module.named_parameters(/*recurse=*/true))
      expected.emplace_back(item.key(), item.value());
    for (auto& item : module.named_buffers(/*recurse=*/true))
      expected.emplace_back(item.key(), item.value());

    // DataParallel checkpoints prefix every key with "module.".
    const std::string dp = "module.";
    bool all_prefixed = !file.empty();
    for (auto& [k, v] : file)
      all_prefixed = all_prefixed && k.rfind(dp, 0) == 0;
    for (auto& [k, v] : expected)
      all_prefixed = all_prefixed && k.rfind(dp, 0) != 0;
    if (all_prefixed)
      for (auto& [k, v] : file)
        k = k.substr(dp.size());

    std::unordered_map<std::string, at::Tensor> by_name;
    std::vector<std::string> unexpected;
    for (auto& [k, v] : file)
      if (!by_name.emplace(k, v).second)
        unexpected.push_back(k + " (duplicate)");
    std::unordered_map<std::string, bool> known;
    for (auto& [k, v] : expected)
      known[k] = true;

    std::vector<std::string> missing, mismatched;
    for (auto& [name, dst] : expected) {
      auto it = by_name.find(name);
      if (it == by_name.end()) {
        if (!ends_with(name, "num_batches_tracked"))
          missing.push_back(name);
        continue;
      }
      const auto& src = it->second;
      if (src.sizes() != dst.sizes())
        mismatched.push_back(name + ": expected " + shape_str(dst.sizes()) + " got "
                             + shape_str(src.sizes()));
      else if (src.is_floating_point() != dst.is_floating_point() || src.is_complex() != dst.is_complex())
        mismatched.push_back(name + ": expected dtype " + std::string(c10::toString(dst.scalar_type()))
                             + " got " + c10::toString(src.scalar_type()));
    }
    for (auto& [k, v] : file)
      if (!known.count(k) && !ends_with(k, "num_batches_tracked"))
        unexpected.push_back(k);
    for (auto& k : read->non_tensors)
      if (!known.count(k))
        unexpected.push_back(k + " (not a tensor)");
      else
        mismatched.push_back(k + ": expected a tensor, file holds a non-tensor value");

    if (!missing.empty() || !unexpected.empty() || !mismatched.empty()) {
      std::string msg = "weights file " + path + " does not match the model (" + std::to_string(file.size())
                        + " tensors in file, " + std::to_string(expected.size()) + " in model)";
      if (!missing.empty())
        msg += "; " + std::to_string(missing.size()) + " missing keys: " + join_truncated(missing);
      if (!unexpected.empty())
        msg += "; " + std::to_string(unexpected.size()) + " unexpected keys: " + join_truncated(unexpected);
      if (!mismatched.empty())
        msg += "; " + std::to_string(mismatched.size()) + " mis-shaped keys: " + join_truncated(mismatched, 8);
      return fail(errc::unprocessable, std::move(msg));
    }

    torch::NoGradGuard no_grad;
    for (auto& [name, dst] : expected) {
      auto it = by_name.find(name);
      if (it != by_name.end())
        dst.copy_(it->second);
    }
    return {};
  } catch (const c10::Error& e) {
    return fail(errc::unprocessable,
                "cannot read weights file " + path + ": " + first_line(e.what_without_backtrace()));
  } catch (const std::bad_alloc&) {
    return fail(errc::unprocessable, "cannot read weights file " + path + ": out of memory");
  } catch (const std::exception& e) {
    return fail(errc::unprocessable, "cannot read weights file " + path + ": " + e.what());
  }
}

namespace detail {

result<std::size_t> read_state_dict_pickle(
  std::string_view pickle, const std::function<std::optional<std::string>(const std::string& key)>& record) {
  try {
    auto load = [&](const std::string& key, at::ScalarType st, int64_t numel) {
      auto bytes = record(key);
      if (!bytes)
        throw std::runtime_error("no record data/" + key);
      return storage_from(key, st, numel, bytes->data(), bytes->size());
    };
    auto read = read_pickle(pickle.data(), pickle.size(), load, "the pickle");
    if (!read)
      return read.error();
    return read->tensors.size();
  } catch (const c10::Error& e) {
    return fail(errc::unprocessable, first_line(e.what_without_backtrace()));
  } catch (const std::bad_alloc&) {
    return fail(errc::unprocessable, "out of memory");
  } catch (const std::exception& e) {
    return fail(errc::unprocessable, e.what());
  }
}

} // namespace detail

// --- writing ---------------------------------------------------------------------
// A pickle of exactly the shape Python's torch.save(model.state_dict()) writes
// (protocol 2 opcodes only):
//   OrderedDict() with SETITEMS of name -> _rebuild_tensor_v2(
//     persistent_load(('storage', torch.<T>Storage, key, 'cpu', numel)),
//     0, size, stride, False, OrderedDict())
// and the storages as records data/<key>.

namespace {

class pickle_writer {
public:
  void proto() { op(0x80); op(2); }
  void stop() { op('.'); }
  void mark() { op('('); }
  void tuple() { op('t'); }
  void empty_tuple() { op(')'); }
  void reduce() { op('R'); }
  void setitems() { op('u'); }
  void binpersid() { op('Q'); }
  void boolean(bool b) { op(b ? 0x88 : 0x89); }
  void global(const std::string& module, const std::string& name) {
    op('c');
    out_ += module + "\n" + name + "\n";
  }
  void str(const std::string& s) {
    op('X');
    le(s.size(), 4);
    out_ += s;
  }
  void integer(int64_t v) {
    if (v >= 0 && v < 256) {
      op('K');
      le(static_cast<uint64_t>(v), 1);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      op('J');
      le(static_cast<uint64_t>(static_cast<uint32_t>(static_cast<int32_t>(v))), 4);
    } else {
      op(0x8a); // LONG1: 8 bytes, two's complement little-endian
      le(8, 1);
      le(static_cast<uint64_t>(v), 8);
    }
  }
  void int_tuple(at::IntArrayRef values) {
    mark();
    for (auto v : values)
      integer(v);
    tuple();
  }
  const std::string& bytes() const { return out_; }

private:
  void op(int c) { out_.push_back(static_cast<char>(c)); }
  void le(uint64_t v, int n) {
    for (int k = 0; k < n; ++k)
      out_.push_back(static_cast<char>((v >> (8 * k)) & 0xff));
  }
  std::string out_;
};

const char* storage_name(at::ScalarType st) {
  switch (st) {
    case at::kFloat: return "FloatStorage";
    case at::kDouble: return "DoubleStorage";
    case at::kHalf: return "HalfStorage";
    case at::kBFloat16: return "BFloat16Storage";
    case at::kLong: return "LongStorage";
    case at::kInt: return "IntStorage";
    case at::kShort: return "ShortStorage";
    case at::kChar: return "CharStorage";
    case at::kByte: return "ByteStorage";
    case at::kBool: return "BoolStorage";
    case at::kComplexFloat: return "ComplexFloatStorage";
    case at::kComplexDouble: return "ComplexDoubleStorage";
    default: return nullptr;
  }
}

} // namespace

status save_module_weights(torch::nn::Module& module, const std::string& path) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
  return fail(errc::internal, "save_module_weights: big-endian hosts are not supported");
#endif
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path tmp = target.parent_path() / (target.filename().string() + ".tmp");
  try {
    std::vector<std::pair<std::string, at::Tensor>> tensors;
    for (auto& item : module.named_parameters(/*recurse=*/true))
      tensors.emplace_back(item.key(), item.value());
    for (auto& item : module.named_buffers(/*recurse=*/true))
      tensors.emplace_back(item.key(), item.value());

    pickle_writer w;
    std::vector<at::Tensor> storages;
    w.proto();
    w.global("collections", "OrderedDict");
    w.empty_tuple();
    w.reduce();
    w.mark();
    for (auto& [name, value] : tensors) {
      at::Tensor t;
      {
        torch::NoGradGuard no_grad;
        t = value.detach().to(at::kCPU).contiguous().clone();
      }
      const char* storage = storage_name(t.scalar_type());
      if (!storage)
        return fail(errc::internal, "save_module_weights: " + name + " has dtype "
                                      + c10::toString(t.scalar_type())
                                      + ", which has no torch storage type");
      const std::string key = std::to_string(storages.size());
      storages.push_back(t);
      w.str(name);
      w.global("torch._utils", "_rebuild_tensor_v2");
      w.mark();
      w.mark();
      w.str("storage");
      w.global("torch", storage);
      w.str(key);
      w.str("cpu");
      w.integer(t.numel());
      w.tuple();
      w.binpersid();
      w.integer(0); // storage offset
      w.int_tuple(t.sizes());
      w.int_tuple(t.strides());
      w.boolean(false); // requires_grad: a state_dict holds detached tensors
      w.global("collections", "OrderedDict"); // backward hooks
      w.empty_tuple();
      w.reduce();
      w.tuple();
      w.reduce();
    }
    w.setitems();
    w.stop();

    std::error_code ec;
    if (!target.parent_path().empty())
      fs::create_directories(target.parent_path(), ec);
    {
      caffe2::serialize::PyTorchStreamWriter writer(tmp.string());
      const auto& pkl = w.bytes();
      writer.writeRecord("data.pkl", pkl.data(), pkl.size());
      static const std::string little = "little";
      writer.writeRecord("byteorder", little.data(), little.size());
      for (size_t i = 0; i < storages.size(); ++i) {
        const auto& t = storages[i];
        writer.writeRecord("data/" + std::to_string(i), t.data_ptr(), t.nbytes());
      }
      writer.writeEndOfFile();
    }
    fs::rename(tmp, target, ec);
    if (ec) {
      fs::remove(tmp, ec);
      return fail(errc::internal, "cannot write weights file " + path + ": " + ec.message());
    }
    return {};
  } catch (const c10::Error& e) {
    std::error_code ec;
    fs::remove(tmp, ec);
    return fail(errc::internal,
                "cannot write weights file " + path + ": " + first_line(e.what_without_backtrace()));
  } catch (const std::exception& e) {
    std::error_code ec;
    fs::remove(tmp, ec);
    return fail(errc::internal, "cannot write weights file " + path + ": " + e.what());
  }
}

} // namespace rookery
