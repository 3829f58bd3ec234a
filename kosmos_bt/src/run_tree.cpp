// Copyright 2026 The kosmos_ros Authors
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
//     http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

// kosmos_bt_run: tick a tree XML against a running kosmos_node until it ends.
//
//   ros2 run kosmos_bt kosmos_bt_run <tree.xml> [--tick-ms 20] [--timeout-s 60]
//       [--set key=value ...]
//
// The Kosmos nodes come from the plugin library, as any BT.CPP program would
// load them. --set puts a string on the blackboard before the first tick.
// Prints the final status and the blackboard's string and number entries;
// exits 0 on SUCCESS, 1 on FAILURE, 2 when halted (timeout or Ctrl-C: the
// running nodes cancel their goals), 3 on a usage or tree error.

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>
#include <thread>

#include "ament_index_cpp/get_package_prefix.hpp"
#include "behaviortree_cpp/bt_factory.h"
#include "kosmos_bt/ros_node.hpp"
#include "rclcpp/rclcpp.hpp"

namespace
{

// Where kosmos_bt is installed. ament_index_cpp 1.13 (Lyrical) returns it
// as a std::filesystem::path and deprecates the string form, the only one
// Humble and Jazzy have.
std::string package_prefix()
{
#ifdef KOSMOS_BT_PREFIX_AS_PATH
  std::filesystem::path prefix;
  ament_index_cpp::get_package_prefix("kosmos_bt", prefix);
  return prefix.string();
#else
  return ament_index_cpp::get_package_prefix("kosmos_bt");
#endif
}

std::atomic<bool> interrupted{false};

void onSignal(int)
{
  interrupted = true;
}

int usage()
{
  std::cerr << "usage: kosmos_bt_run <tree.xml> [--tick-ms N] [--timeout-s S] "
    "[--set key=value ...]\n";
  return 3;
}

void printBlackboard(const BT::Blackboard::Ptr & blackboard)
{
  for (const auto & key : blackboard->getKeys()) {
    const std::string name(key);
    auto any = blackboard->getAnyLocked(name);
    if (!any || any->empty()) {
      continue;
    }
    if (any->isString()) {
      std::cout << name << ": " << any->cast<std::string>() << "\n";
    } else if (any->isNumber()) {
      std::cout << name << ": " << any->cast<double>() << "\n";
    }
  }
}

}  // namespace

int main(int argc, char ** argv)
{
  // Our own SIGINT/SIGTERM handling: a halted tree still needs ROS to send
  // its cancels, so the context must outlive the signal.
  rclcpp::init(argc, argv, rclcpp::InitOptions(),
    rclcpp::SignalHandlerOptions::None);
  std::signal(SIGINT, onSignal);
  std::signal(SIGTERM, onSignal);
  auto args = rclcpp::remove_ros_arguments(argc, argv);
  if (args.size() < 2) {
    return usage();
  }
  const std::string tree_file = args[1];
  int tick_ms = 20;
  double timeout_s = 60.0;
  auto blackboard = BT::Blackboard::create();
  for (size_t i = 2; i < args.size(); ++i) {
    const std::string arg = args[i];
    if (i + 1 >= args.size()) {
      rclcpp::shutdown();
      return usage();
    }
    const std::string value = args[++i];
    if (arg == "--tick-ms") {
      tick_ms = std::atoi(value.c_str());
    } else if (arg == "--timeout-s") {
      timeout_s = std::atof(value.c_str());
    } else if (arg == "--set" && value.find('=') != std::string::npos) {
      blackboard->set(value.substr(0, value.find('=')),
        value.substr(value.find('=') + 1));
    } else {
      return usage();
    }
  }
  auto node = std::make_shared<rclcpp::Node>("kosmos_bt");
  blackboard->set(kosmos_bt::kNodeKey, node);
  int code = 3;
  try {
    BT::BehaviorTreeFactory factory;
    factory.registerFromPlugin(
      package_prefix() + "/lib/libkosmos_bt_nodes.so");
    auto tree = factory.createTreeFromFile(tree_file, blackboard);
    const auto end = std::chrono::steady_clock::now() +
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(timeout_s));
    auto status = BT::NodeStatus::RUNNING;
    while (!interrupted && std::chrono::steady_clock::now() < end) {
      status = tree.tickOnce();
      if (status != BT::NodeStatus::RUNNING) {
        break;
      }
      tree.sleep(std::chrono::milliseconds(tick_ms));
    }
    if (status == BT::NodeStatus::RUNNING) {
      tree.haltTree();  // the running nodes cancel their goals
      std::cout << "status: HALTED (" << (interrupted ? "interrupted" :
        "timeout") << ")\n";
      code = 2;
    } else {
      std::cout << "status: " << BT::toStr(status) << "\n";
      code = status == BT::NodeStatus::SUCCESS ? 0 : 1;
    }
    printBlackboard(blackboard);
  } catch (const std::exception & error) {
    std::cerr << "kosmos_bt_run: " << error.what() << "\n";
    code = 3;
  }
  rclcpp::shutdown();
  return code;
}
