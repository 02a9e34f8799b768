// Where the device's identity and credentials come from: include/provisioning.h,
// generated per device (format: include/provisioning.example.h).
#pragma once

#if defined(BELLHOP_USE_EXAMPLE_PROVISIONING)
#include "provisioning.example.h"
#elif __has_include("provisioning.h")
#include "provisioning.h"
#else
#error "include/provisioning.h is missing: generate it for this device (see docs/firmware.md), or build env esp32dev-example to check compilation"
#endif

#if BELLHOP_PROVISIONING_FORMAT != 1
#error "include/provisioning.h is of an unknown format: regenerate it for this firmware"
#endif
