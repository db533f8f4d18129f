#include "runtime/app/trainer_main.h"

int main(int argc, char** argv) { return tandem::app::trainerMain(tandem::app::Role::kCloud, argc, argv); }
