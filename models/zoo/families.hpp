// One registration function per family (models/zoo/<family>.cpp). The registry
// calls each once; explicit calls, because static initialisers in a static
// library are dropped by the linker when nothing else references their object.
#pragma once

namespace rookery::zoo {

void register_resnet_models();
void register_vgg_models();
void register_alexnet_models();
void register_squeezenet_models();
void register_densenet_models();
void register_googlenet_models();
void register_inception_models();
void register_mobilenet_models();
void register_mnasnet_models();
void register_shufflenet_models();
void register_efficientnet_models();
void register_regnet_models();
void register_convnext_models();
void register_vit_models();
void register_swin_models();
void register_maxvit_models();
// Rookery's own architectures (model_entry::custom): what the trainers build.
void register_small_models();       // models/zoo/small_models.cpp: small_cnn
void register_autoencoder_models(); // models/zoo/autoencoder.cpp: conv_ae, conv_vae

} // namespace rookery::zoo
