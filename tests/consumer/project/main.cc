// An outside program that only sees rdmacoll's installed headers and libraries.
#include <iostream>

#include "rdmacoll/settings.h"

int main() {
  // Prints the settings table; proves headers resolve and the libraries link and load.
  rdmacoll::settings::print(std::cout);
  return rdmacoll::settings::all().empty() ? 1 : 0;
}
