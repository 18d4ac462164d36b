// bnncc_run -- run a bnncc/TVM-compiled model (.so exported by a Relax Executable) on one device.
//
//   bnncc_run [--func NAME] [--repeat N] [--mark] MODEL.so OUTPUT.npy INPUT.npy [INPUT.npy ...]
//
// Loads MODEL.so with the TVM runtime (libtvm_runtime.so, which registers the Relax VM) through
// apache-tvm-ffi's C++ API only (the pip wheels ship tvm-ffi's headers, not TVM's runtime headers),
// creates the Relax VM the way python's tvm.runtime.vm.VirtualMachine does (vm_load_executable,
// vm_initialization(device_type, device_id, allocator), then GetFunction("main")), feeds the .npy
// inputs (any shape; float32 or any other little-endian numeric dtype) and writes the output as .npy.
// A tuple output is written as OUTPUT.0.npy, OUTPUT.1.npy, ...
//
//   --repeat N   run N times (after one warm-up run) and print the mean time per run on stderr
//   --mark       call syscall(0x4d41, 1) / syscall(0x4d41, 2) around the timed runs: markers for the
//                qemu-insncount plugin (an unallocated syscall number; returns ENOSYS on Linux).
//                Do not use it on Android: its seccomp filter may kill a process for unknown syscalls.
#include <dlpack/dlpack.h>
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace ffi = tvm::ffi;

namespace {

constexpr int kPooledAllocator = 2;  // tvm.runtime.vm.VirtualMachine.POOLED_ALLOCATOR
constexpr long kMarkSyscall = 0x4d41;

struct AlignedCPUAlloc {
  void AllocData(DLTensor* t) {
    size_t n = ffi::GetDataSize(*t);
    t->data = std::aligned_alloc(64, (n + 63) / 64 * 64 + 64);
    if (t->data == nullptr) throw std::runtime_error("out of memory");
  }
  void FreeData(DLTensor* t) { std::free(t->data); }
};

// ------------------------------------------------------------------------------------------ .npy
struct DTypeName {
  const char* descr;
  DLDataType dtype;
};
const DTypeName kDTypes[] = {
    {"f4", {kDLFloat, 32, 1}}, {"f8", {kDLFloat, 64, 1}}, {"f2", {kDLFloat, 16, 1}},
    {"i1", {kDLInt, 8, 1}},    {"i2", {kDLInt, 16, 1}},   {"i4", {kDLInt, 32, 1}},
    {"i8", {kDLInt, 64, 1}},   {"u1", {kDLUInt, 8, 1}},   {"u2", {kDLUInt, 16, 1}},
    {"u4", {kDLUInt, 32, 1}},  {"u8", {kDLUInt, 64, 1}},  {"b1", {kDLBool, 8, 1}},
};

std::string DescrOf(DLDataType t) {
  for (const auto& d : kDTypes) {
    if (d.dtype.code == t.code && d.dtype.bits == t.bits && t.lanes == 1) {
      return (t.bits == 8 ? "|" : "<") + std::string(d.descr);
    }
  }
  throw std::runtime_error("no .npy dtype for DLDataType code=" + std::to_string(t.code) +
                           " bits=" + std::to_string(t.bits) + " lanes=" + std::to_string(t.lanes));
}

// Value of key `key` in the python-dict-literal header, e.g. "'descr': '<f4'" -> "'<f4'".
std::string HeaderField(const std::string& h, const std::string& key) {
  size_t p = h.find("'" + key + "'");
  if (p == std::string::npos) throw std::runtime_error(".npy header has no '" + key + "'");
  p = h.find(':', p) + 1;
  while (h[p] == ' ') ++p;
  size_t e = h[p] == '(' ? h.find(')', p) + 1 : h.find_first_of(",}", p);
  return h.substr(p, e - p);
}

ffi::Tensor ReadNpy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  char magic[8];
  f.read(magic, 8);
  if (!f || std::memcmp(magic, "\x93NUMPY", 6) != 0) throw std::runtime_error(path + ": not a .npy file");
  uint32_t hlen = 0;
  if (magic[6] == 1) {
    uint8_t b[2];
    f.read(reinterpret_cast<char*>(b), 2);
    hlen = b[0] | (b[1] << 8);
  } else {
    uint8_t b[4];
    f.read(reinterpret_cast<char*>(b), 4);
    hlen = b[0] | (b[1] << 8) | (b[2] << 16) | (uint32_t(b[3]) << 24);
  }
  std::string h(hlen, '\0');
  f.read(h.data(), hlen);
  if (HeaderField(h, "fortran_order") != "False") throw std::runtime_error(path + ": fortran_order arrays");
  std::string descr = HeaderField(h, "descr");  // "'<f4'"
  descr = descr.substr(1, descr.size() - 2);
  if (descr[0] == '>') throw std::runtime_error(path + ": big-endian arrays are not supported");
  DLDataType dtype{};
  bool found = false;
  for (const auto& d : kDTypes) {
    if (descr.substr(1) == d.descr) dtype = d.dtype, found = true;
  }
  if (!found) throw std::runtime_error(path + ": unsupported dtype " + descr);
  std::vector<int64_t> shape;
  std::string s = HeaderField(h, "shape");  // "(2, 3)" / "(4,)" / "()"
  for (size_t i = 1; i < s.size();) {
    size_t j = s.find_first_of(",)", i);
    std::string num = s.substr(i, j - i);
    if (num.find_first_not_of(' ') != std::string::npos) shape.push_back(std::stoll(num));
    i = j + 1;
  }
  ffi::Tensor t = ffi::Tensor::FromNDAlloc(AlignedCPUAlloc(), ffi::ShapeView(shape.data(), shape.size()),
                                           dtype, DLDevice{kDLCPU, 0});
  size_t nbytes = ffi::GetDataSize(*t.GetDLTensorPtr());
  f.read(static_cast<char*>(t.data_ptr()), nbytes);
  if (static_cast<size_t>(f.gcount()) != nbytes) throw std::runtime_error(path + ": truncated data");
  return t;
}

void WriteNpy(const std::string& path, const ffi::Tensor& t) {
  const DLTensor* dl = t.GetDLTensorPtr();
  if (dl->device.device_type != kDLCPU) throw std::runtime_error("output is not on the CPU");
  if (!t.IsContiguous()) throw std::runtime_error("output tensor is not contiguous");
  std::ostringstream hs;
  hs << "{'descr': '" << DescrOf(dl->dtype) << "', 'fortran_order': False, 'shape': (";
  for (int i = 0; i < dl->ndim; ++i) hs << dl->shape[i] << (dl->ndim == 1 || i + 1 < dl->ndim ? "," : "");
  hs << "), }";
  std::string h = hs.str();
  size_t total = 10 + h.size() + 1;
  h.append((64 - total % 64) % 64, ' ');
  h.push_back('\n');
  std::ofstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot write " + path);
  f.write("\x93NUMPY\x01\x00", 8);
  uint16_t hlen = static_cast<uint16_t>(h.size());
  char lb[2] = {static_cast<char>(hlen & 0xff), static_cast<char>(hlen >> 8)};
  f.write(lb, 2);
  f.write(h.data(), h.size());
  f.write(static_cast<const char*>(dl->data) + dl->byte_offset, ffi::GetDataSize(*dl));
  if (!f) throw std::runtime_error("error writing " + path);
}

int Usage() {
  std::cerr << "usage: bnncc_run [--func NAME] [--repeat N] [--mark] MODEL.so OUTPUT.npy INPUT.npy "
               "[INPUT.npy ...]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string func_name = "main";
  int repeat = 0;
  bool mark = false;
  std::vector<std::string> pos;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--func" && i + 1 < argc) {
      func_name = argv[++i];
    } else if (a == "--repeat" && i + 1 < argc) {
      repeat = std::atoi(argv[++i]);
    } else if (a == "--mark") {
      mark = true;
    } else if (a == "-h" || a == "--help" || (a.size() > 1 && a[0] == '-')) {
      return Usage();
    } else {
      pos.push_back(a);
    }
  }
  if (pos.size() < 3) return Usage();
  try {
    // The library's own imports (the serialized VMExecutable) are deserialized by
    // ffi.Module.load_from_bytes.relax.VMExecutable, registered by libtvm_runtime.so (linked in).
    // dlopen() searches the library path for a name without '/': pass an absolute path (as python does).
    char* abs = realpath(pos[0].c_str(), nullptr);
    if (abs == nullptr) throw std::runtime_error("cannot find " + pos[0]);
    std::string model_path = abs;
    std::free(abs);
    ffi::Module lib = ffi::Module::LoadFromFile(model_path);
    ffi::Optional<ffi::Function> load_exec = lib->GetFunction("vm_load_executable", true);
    if (!load_exec.has_value()) {
      throw std::runtime_error(pos[0] + " has no vm_load_executable: not a Relax executable");
    }
    ffi::Module vm = load_exec.value()().cast<ffi::Module>();
    // One CPU device (kDLCPU, id 0) with the pooled allocator, as VirtualMachine(ex, tvm.cpu()).
    vm->GetFunction("vm_initialization", false).value()(static_cast<int>(kDLCPU), 0, kPooledAllocator);
    ffi::Optional<ffi::Function> fopt = vm->GetFunction(func_name, false);
    if (!fopt.has_value()) throw std::runtime_error("the model has no function '" + func_name + "'");
    ffi::Function f = fopt.value();

    std::vector<ffi::Tensor> inputs;
    std::vector<ffi::AnyView> args;
    for (size_t i = 2; i < pos.size(); ++i) inputs.push_back(ReadNpy(pos[i]));
    for (const auto& t : inputs) args.emplace_back(t);
    ffi::Any ret;
    f.CallPacked(args.data(), static_cast<int32_t>(args.size()), &ret);

    if (repeat > 0) {
      if (mark) syscall(kMarkSyscall, 1);
      auto t0 = std::chrono::steady_clock::now();
      for (int r = 0; r < repeat; ++r) f.CallPacked(args.data(), static_cast<int32_t>(args.size()), &ret);
      auto t1 = std::chrono::steady_clock::now();
      if (mark) syscall(kMarkSyscall, 2);
      double ms = std::chrono::duration<double, std::milli>(t1 - t0).count() / repeat;
      std::fprintf(stderr, "bnncc_run: %s: %.4f ms/run over %d runs\n", func_name.c_str(), ms, repeat);
    }

    if (auto t = ret.as<ffi::Tensor>()) {
      WriteNpy(pos[1], *t);
    } else if (auto arr = ret.as<ffi::Array<ffi::Any>>()) {
      std::string base = pos[1];
      if (base.size() > 4 && base.substr(base.size() - 4) == ".npy") base.resize(base.size() - 4);
      for (size_t i = 0; i < arr->size(); ++i) {
        WriteNpy(base + "." + std::to_string(i) + ".npy", (*arr)[i].cast<ffi::Tensor>());
      }
    } else {
      throw std::runtime_error("unsupported return type " + ret.GetTypeKey());
    }
  } catch (const ffi::Error& e) {
    std::cerr << "bnncc_run: TVM error: " << e.kind() << ": " << e.message() << "\n" << e.backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "bnncc_run: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
