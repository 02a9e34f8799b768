#include "bellhop/room_controller.hpp"
